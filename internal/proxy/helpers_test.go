package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/require"
)

// fakeAuth is an Authorizer injecting API faults: tokens map to users (and
// optionally to an expiry); an outage makes every check fail as a transport
// error would.
type fakeAuth struct {
	mu      sync.Mutex
	users   map[string]arvados.User
	expires map[string]time.Time
	outage  bool
	calls   int
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{users: map[string]arvados.User{
		"tok-active":   {Common: arvados.Common{UUID: "zzzzz-tpzed-000000000000001"}, IsActive: true},
		"tok-inactive": {Common: arvados.Common{UUID: "zzzzz-tpzed-000000000000002"}, IsActive: false},
		"tok-other":    {Common: arvados.Common{UUID: "zzzzz-tpzed-000000000000005"}, IsActive: true},
	}}
}

func (a *fakeAuth) Authorize(ctx context.Context, token, requestID string) (Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.outage {
		return Identity{}, errors.New("GET users/current: 502 Bad Gateway")
	}
	u, ok := a.users[token]
	if !ok {
		return Identity{}, fmt.Errorf("GET users/current: 401: %w", ErrTokenRejected)
	}
	return Identity{User: u, ExpiresAt: a.expires[token]}, nil
}

func (a *fakeAuth) set(f func(a *fakeAuth)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// memWriter is a BlockWriter that keeps blocks in memory; hold, when set,
// blocks each PutBlock until released.
type memWriter struct {
	mu       sync.Mutex
	blocks   map[string][]byte
	reqs     []PutRequest
	replicas int   // stored per call; 0 = the request's, else 2
	fail     error // returned with replicas stored
	started  chan struct{}
	release  chan struct{}
}

func (m *memWriter) PutBlock(ctx context.Context, data []byte, req PutRequest) (PutResult, error) {
	if m.started != nil {
		m.started <- struct{}{}
		<-m.release
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blocks == nil {
		m.blocks = map[string][]byte{}
	}
	m.reqs = append(m.reqs, req)
	n := m.replicas
	if n == 0 {
		n = max(req.Replicas, 2)
		if req.Replicas > 0 {
			n = req.Replicas
		}
	}
	loc := fmt.Sprintf("%s+%d", req.Hash, len(data))
	if m.fail != nil {
		return PutResult{Replicas: n, Failures: []string{"[503] volume unavailable"}}, m.fail
	}
	m.blocks[req.Hash] = append([]byte(nil), data...)
	return PutResult{Locator: loc + "+Afake@00000000\n", Replicas: n}, nil
}

func (m *memWriter) stored() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.blocks)
}

// fakeSink is an AuditSink that can be switched into an outage and counts
// deliveries per record id.
type fakeSink struct {
	mu      sync.Mutex
	outage  bool
	byID    map[string]int
	records []map[string]any
}

func (f *fakeSink) CreateLog(ctx context.Context, attrs map[string]any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.outage {
		return errors.New("POST logs: 503 Service Unavailable")
	}
	if f.byID == nil {
		f.byID = map[string]int{}
	}
	id := attrs["properties"].(map[string]any)["record_id"].(string)
	f.byID[id]++
	f.records = append(f.records, attrs)
	return nil
}

func (f *fakeSink) setOutage(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outage = b
}

func (f *fakeSink) count() (records int, ids map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids = map[string]int{}
	for k, v := range f.byID {
		ids[k] = v
	}
	return len(f.records), ids
}

type testEnv struct {
	srv  *Server
	ts   *httptest.Server
	auth *fakeAuth
	w    *memWriter
	sink *fakeSink
}

// newTestEnv starts a proxy with fault-injecting fakes behind a real HTTP
// server. mod may adjust the options.
func newTestEnv(t *testing.T, mod func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{auth: newFakeAuth(), w: &memWriter{}, sink: &fakeSink{}}
	opts := Options{
		Authorizer: e.auth, Writer: e.w, Audit: e.sink,
		SpoolDir: t.TempDir(), ManagementToken: "mgmt-token",
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	e.srv = srv
	e.ts = httptest.NewServer(srv)
	t.Cleanup(func() {
		e.ts.Close()
		srv.Close()
	})
	return e
}

// do sends a request with the given headers and returns status, headers and body.
func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if s, ok := body.(*strings.Reader); ok {
		req.ContentLength = int64(s.Len())
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}
