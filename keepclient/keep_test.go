package keepclient

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func svc(uuid, rawURL, typ string) arvados.KeepService {
	u, _ := url.Parse(rawURL)
	port, _ := strconv.Atoi(u.Port())
	var s arvados.KeepService
	s.UUID, s.ServiceHost, s.ServicePort, s.ServiceType = uuid, u.Hostname(), port, typ
	return s
}

// The rendezvous vectors of PROTOCOL 5.3 (upstream's Go and Python tests).
func TestProbeOrder_vectors(t *testing.T) {
	var services []arvados.KeepService
	for i := 0; i < 16; i++ {
		services = append(services, arvados.KeepService{Common: arvados.Common{UUID: fmt.Sprintf("zzzzz-bi6l4-%015x", i)}})
	}
	for h, want := range []string{
		"3 e a b 2 d 5 f c 9 6 8 1 0 7 4",
		"0 9 7 d b a 5 2 e 6 4 8 f 1 c 3",
		"c 5 b 4 e 0 2 3 f 8 a 7 d 6 9 1",
		"9 d 8 1 c 0 2 e 7 6 a 3 b f 5 4",
	} {
		hash := arvados.HashOf([]byte(fmt.Sprintf("%064x", h)))
		var got []string
		for _, s := range ProbeOrder(hash, services) {
			got = append(got, strings.TrimLeft(s.UUID[12:], "0"))
		}
		for i := range got {
			if got[i] == "" {
				got[i] = "0"
			}
		}
		assert.Equal(t, want, strings.Join(got, " "), "h=%d hash=%s", h, hash)
	}
	small := ProbeOrder("acbd18db4cc2f85cedef654fccc4a4d8", services[:3])
	assert.Equal(t, []string{"zzzzz-bi6l4-000000000000000", "zzzzz-bi6l4-000000000000002", "zzzzz-bi6l4-000000000000001"},
		[]string{small[0].UUID, small[1].UUID, small[2].UUID})
}

// fakeKeepstore behaves like keepstore's PUT (PROTOCOL 4.2): body md5
// checked, locator plus newline returned. fail(n) lets a test inject
// failures for the nth request.
type fakeKeepstore struct {
	srv      *httptest.Server
	puts     atomic.Int32
	mu       sync.Mutex
	blocks   map[string][]byte
	replicas string // X-Keep-Replicas-Stored value; "" = "1"
	newline  bool
	fail     func(n int, w http.ResponseWriter) bool
	lastHdr  http.Header
}

func newFakeKeepstore(t *testing.T) *fakeKeepstore {
	f := &fakeKeepstore{blocks: map[string][]byte{}, newline: true}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hash := strings.TrimPrefix(r.URL.Path, "/")[:min(32, len(r.URL.Path)-1)]
		switch r.Method {
		case http.MethodPut:
			n := int(f.puts.Add(1))
			f.mu.Lock()
			f.lastHdr = r.Header.Clone()
			f.mu.Unlock()
			if f.fail != nil && f.fail(n, w) {
				return
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			if arvados.HashOf(body) != hash {
				http.Error(w, "content hash mismatch", http.StatusBadRequest)
				return
			}
			f.mu.Lock()
			f.blocks[hash] = body
			f.mu.Unlock()
			rep := f.replicas
			if rep == "" {
				rep = "1"
			}
			w.Header().Set("X-Keep-Replicas-Stored", rep)
			w.Header().Set("X-Keep-Storage-Classes-Confirmed", "default=1")
			loc := hash + "+" + strconv.Itoa(len(body)) + "+A0123456789abcdef0123456789abcdef01234567@7fffffff"
			if f.newline {
				loc += "\n"
			}
			io.WriteString(w, loc)
		case http.MethodGet, http.MethodHead:
			f.mu.Lock()
			b, ok := f.blocks[hash]
			f.mu.Unlock()
			if !ok {
				http.Error(w, "file does not exist", http.StatusNotFound)
				return
			}
			w.Write(b)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKeepstore) service(i int, typ string) arvados.KeepService {
	return svc(fmt.Sprintf("zzzzz-bi6l4-%015d", i), f.srv.URL, typ)
}

func TestKeepPut_replicationAcrossDisks(t *testing.T) {
	var stores []*fakeKeepstore
	var services []arvados.KeepService
	for i := 0; i < 3; i++ {
		f := newFakeKeepstore(t)
		f.newline = i%2 == 0
		stores = append(stores, f)
		services = append(services, f.service(i, "disk"))
	}
	k := NewKeep(nil, KeepOptions{Services: services, Replicas: 2, RetryDelay: time.Millisecond})
	data := []byte("foo")
	res, err := k.Put(context.Background(), data, PutOptions{Token: "tok", StorageClasses: []string{"default", "fast"}})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Replicas)
	assert.Regexp(t, `^acbd18db4cc2f85cedef654fccc4a4d8\+3\+A[0-9a-f]{40}@7fffffff$`, res.Locator)
	assert.Equal(t, 2, res.Classes["default"])
	total := 0
	for _, f := range stores {
		total += int(f.puts.Load())
	}
	assert.Equal(t, 2, total, "exactly the wanted number of PUTs")
	// The first two in probe order got it.
	order := ProbeOrder(arvados.HashOf(data), services)
	for i, s := range order {
		for j, f := range stores {
			if services[j].UUID == s.UUID {
				assert.Equal(t, i < 2, f.puts.Load() == 1, "probe position %d", i)
				if i == 0 {
					assert.Equal(t, "Bearer tok", f.lastHdr.Get("Authorization"))
					assert.Equal(t, "2", f.lastHdr.Get("X-Keep-Desired-Replicas"))
					assert.Equal(t, "default, fast", f.lastHdr.Get("X-Keep-Storage-Classes"))
					assert.Equal(t, "3", f.lastHdr.Get("Content-Length"))
					assert.Regexp(t, `^req-[0-9a-z]{20}$`, f.lastHdr.Get("X-Request-Id"))
				}
			}
		}
	}
}

func TestKeepPut_proxyCountsReplicasHeader(t *testing.T) {
	f := newFakeKeepstore(t)
	f.newline = false
	f.replicas = "2"
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "proxy")}, Replicas: 2})
	res, err := k.Put(context.Background(), []byte("bar"), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Replicas)
	assert.Equal(t, int32(1), f.puts.Load())
}

func TestKeepPut_wrongReplicasHeader(t *testing.T) {
	// A proxy that claims 0 replicas stored on a 200 does not satisfy the
	// goal; garbage counts as 1, as the Go SDK does.
	f := newFakeKeepstore(t)
	f.replicas = "0"
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "proxy")}, Replicas: 1, RetryDelay: time.Millisecond})
	res, err := k.Put(context.Background(), []byte("x"), PutOptions{})
	assert.ErrorIs(t, err, ErrInsufficientReplicas)
	assert.Equal(t, 0, res.Replicas)
	f.replicas = "lots"
	res, err = k.Put(context.Background(), []byte("x"), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Replicas)
}

func TestKeepPut_retry503ThenSuccess(t *testing.T) {
	f := newFakeKeepstore(t)
	f.fail = func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			http.Error(w, "volume unavailable", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, RetryDelay: time.Millisecond})
	res, err := k.Put(context.Background(), []byte("foo"), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Replicas)
	require.Len(t, res.Failures, 1)
	assert.Equal(t, 503, res.Failures[0].Status)
	assert.Equal(t, int32(2), f.puts.Load())
}

func TestKeepPut_connectionCutMidBody(t *testing.T) {
	f := newFakeKeepstore(t)
	f.fail = func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		}
		return false
	}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, RetryDelay: time.Millisecond})
	data := make([]byte, 1<<20)
	_, err := k.Put(context.Background(), data, PutOptions{})
	require.NoError(t, err)
	f.mu.Lock()
	assert.Equal(t, data, f.blocks[arvados.HashOf(data)], "the retry re-sent the whole body")
	f.mu.Unlock()
}

// Retries < 0 means one pass and no retries (not zero passes).
func TestKeepPut_negativeRetriesMeansOnePass(t *testing.T) {
	f := newFakeKeepstore(t)
	f.fail = func(n int, w http.ResponseWriter) bool {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, Retries: -1, RetryDelay: time.Millisecond})
	res, err := k.Put(context.Background(), []byte("foo"), PutOptions{})
	assert.ErrorIs(t, err, ErrInsufficientReplicas)
	assert.Equal(t, int32(1), f.puts.Load())
	assert.Len(t, res.Failures, 1)
}

func TestKeepPut_permanentErrorsNotRetried(t *testing.T) {
	f := newFakeKeepstore(t)
	f.fail = func(n int, w http.ResponseWriter) bool {
		http.Error(w, "insufficient storage", http.StatusInsufficientStorage)
		return true
	}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, RetryDelay: time.Millisecond})
	res, err := k.Put(context.Background(), []byte("foo"), PutOptions{})
	assert.ErrorIs(t, err, ErrInsufficientReplicas)
	assert.Contains(t, err.Error(), "[507] insufficient storage")
	assert.Equal(t, int32(1), f.puts.Load())
	assert.Len(t, res.Failures, 1)
}

// A Keep service that refuses the token (401, or 403 as keepproxy answers
// an invalid token) makes Put fail with ErrTokenRefused, not retried; any
// other failure mixed in does not.
func TestKeepPut_tokenRefused(t *testing.T) {
	for _, tc := range []struct {
		statuses []int
		refused  bool
	}{
		{[]int{403}, true},
		{[]int{401, 403}, true},
		{[]int{403, 507}, false},
	} {
		var svcs []arvados.KeepService
		for i, st := range tc.statuses {
			f := newFakeKeepstore(t)
			f.fail = func(n int, w http.ResponseWriter) bool {
				http.Error(w, "Missing or invalid Authorization header", st)
				return true
			}
			svcs = append(svcs, f.service(i, "disk"))
		}
		k := NewKeep(nil, KeepOptions{Services: svcs, Replicas: len(svcs), RetryDelay: time.Millisecond})
		_, err := k.Put(context.Background(), []byte("foo"), PutOptions{})
		assert.ErrorIs(t, err, ErrInsufficientReplicas, "%v", tc.statuses)
		assert.Equal(t, tc.refused, errors.Is(err, ErrTokenRefused), "%v: %v", tc.statuses, err)
	}
}

func TestKeepPut_tooLargeRefusedBeforeSending(t *testing.T) {
	f := newFakeKeepstore(t)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}})
	_, err := k.Put(context.Background(), make([]byte, arvados.BlockSize+1), PutOptions{})
	assert.ErrorIs(t, err, ErrBlockTooLarge)
	assert.Equal(t, int32(0), f.puts.Load())
}

func TestKeepPut_contextStopsRetries(t *testing.T) {
	f := newFakeKeepstore(t)
	f.fail = func(n int, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, RetryDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := k.Put(ctx, []byte("foo"), PutOptions{})
		done <- err
	}()
	for f.puts.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Put did not return after cancel")
	}
}

func TestKeepGetHead(t *testing.T) {
	f := newFakeKeepstore(t)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1})
	res, err := k.Put(context.Background(), []byte("hello"), PutOptions{})
	require.NoError(t, err)
	got, err := k.Get(context.Background(), res.Locator)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
	assert.NoError(t, k.Head(context.Background(), res.Locator))
	assert.Error(t, k.Head(context.Background(), arvados.LocatorFor([]byte("nope"))))
	f.mu.Lock()
	f.blocks[arvados.HashOf([]byte("hello"))] = []byte("jello")
	f.mu.Unlock()
	_, err = k.Get(context.Background(), res.Locator)
	assert.ErrorContains(t, err, ErrChecksum.Error())
}

func TestServicesFromEnv(t *testing.T) {
	s := ServicesFromEnv("https://keep.example:443/ http://10.0.0.1:25107")
	require.Len(t, s, 2)
	assert.Equal(t, "00000-bi6l4-000000000000000", s[0].UUID)
	assert.Equal(t, "https://keep.example:443", s[0].URL())
	assert.Equal(t, "http://10.0.0.1:25107", s[1].URL())
	assert.Equal(t, "proxy", s[1].ServiceType)
}

// fakeAPI serves the API subset a client needs, as PROTOCOL 9 describes.
func fakeAPI(t *testing.T, handler http.HandlerFunc) (*Client, *httptest.Server) {
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{APIHost: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", Token: "v2/zzzzz-gj3su-000000000000001/sekrit", MaxElapsed: 5 * time.Second})
	require.NoError(t, err)
	return c, srv
}

func TestClient_errorsAndRetries(t *testing.T) {
	var calls atomic.Int32
	var ids sync.Map
	c, _ := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		ids.Store(r.Header.Get("X-Request-Id"), true)
		switch r.URL.Path {
		case "/arvados/v1/users/current":
			if r.Header.Get("Authorization") != "Bearer v2/zzzzz-gj3su-000000000000001/sekrit" {
				w.WriteHeader(401)
				return
			}
			if n < 3 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			io.WriteString(w, `{"uuid":"zzzzz-tpzed-000000000000001","is_active":true}`)
		case "/arvados/v1/collections":
			w.WriteHeader(403)
			io.WriteString(w, `{"errors":["Forbidden: token scope (req-abc)"],"error_token":"1700000000+1a2b3c4d"}`)
		}
	})
	u, err := c.CurrentUser(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "zzzzz-tpzed-000000000000001", u.UUID)
	assert.Equal(t, int32(3), calls.Load(), "502s retried")
	n := 0
	ids.Range(func(k, v any) bool { n++; return true })
	assert.Equal(t, 1, n, "one request id across retries")

	calls.Store(0)
	_, err = c.CreateCollection(context.Background(), map[string]any{"name": "x"}, true)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 403, ae.Status)
	assert.False(t, IsTemporary(err))
	assert.NotErrorIs(t, err, ErrTokenRefused, "a 403 from the API server is about the object, not the token")
	assert.Equal(t, int32(1), calls.Load(), "403 not retried")
	assert.Contains(t, err.Error(), "POST")
	assert.Contains(t, err.Error(), "/arvados/v1/collections")
	assert.Contains(t, err.Error(), "Forbidden: token scope")
	assert.NotContains(t, err.Error(), "sekrit")

	_, err = c.WithToken("v2/zzzzz-gj3su-000000000000001/revoked").CurrentUser(context.Background())
	assert.ErrorIs(t, err, ErrTokenRefused, "a 401 from the API server means the token itself")
}

func TestClient_discoveryCachedAndBodies(t *testing.T) {
	var disc atomic.Int32
	var gotBody, gotQuery string
	c, _ := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/discovery/v1/apis/arvados/v1/rest":
			disc.Add(1)
			io.WriteString(w, `{"uuidPrefix":"zzzzz","blobSignatureTtl":1209600,"defaultCollectionReplication":3,"maxRequestSize":134217728}`)
		case "/arvados/v1/collections":
			b, _ := io.ReadAll(r.Body)
			gotBody, gotQuery = string(b), r.URL.RawQuery
			io.WriteString(w, `{"uuid":"zzzzz-4zz18-000000000000001","portable_data_hash":"d41d8cd98f00b204e9800998ecf8427e+0"}`)
		}
	})
	for i := 0; i < 5; i++ {
		d, err := c.Discovery(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 3, d.DefaultCollectionReplication)
	}
	_, err := c.WithToken("other").Discovery(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int32(1), disc.Load())
	coll, err := c.CreateCollection(context.Background(), map[string]any{"name": "n"}, true)
	require.NoError(t, err)
	assert.Equal(t, "zzzzz-4zz18-000000000000001", coll.UUID)
	assert.JSONEq(t, `{"collection":{"name":"n"}}`, gotBody)
	assert.Equal(t, "ensure_unique_name=true", gotQuery)
	k := NewKeep(c, KeepOptions{Services: []arvados.KeepService{}})
	assert.Equal(t, 3, k.defaultReplicas(context.Background()))
}

func TestClient_transportErrorIsTemporaryAndBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewClient(Config{APIHost: addr, Scheme: "http", MaxElapsed: 300 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.CurrentUser(context.Background())
	require.Error(t, err)
	assert.True(t, IsTemporary(err))
	var ae *APIError
	assert.True(t, errors.As(err, &ae))
}

// A PUT whose body stops moving (the server stops reading and never
// answers) is abandoned by the stall watchdog and retried, instead of
// hanging until a whole-request timeout.
func TestKeepPut_stalledBodyRetried(t *testing.T) {
	var attempts atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			io.CopyN(io.Discard, r.Body, 1<<20)
			select { // stall: read no more, answer nothing
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		h := md5.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%x+%d", h.Sum(nil), n)
	}))
	defer srv.Close()
	defer close(release)
	data := bytes.Repeat([]byte("stall"), 32<<20/5)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", srv.URL, "disk")},
		Replicas: 1, RetryDelay: time.Millisecond, StallTimeout: time.Second})
	res, err := k.Put(context.Background(), data, PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, arvados.LocatorFor(data), res.Locator)
	require.Len(t, res.Failures, 1)
	assert.ErrorIs(t, res.Failures[0].Err, errStalled)
	assert.Equal(t, int32(2), attempts.Load())
}

// lingeringTransport answers every request at once with a 503 and, like
// net/http when a server answers early, goes on reading the request body
// afterwards; it records how many bytes it got after the answer.
type lingeringTransport struct {
	mu        sync.Mutex
	lateBytes int
	wg        sync.WaitGroup
}

func (l *lingeringTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	answered := make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		<-answered
		time.Sleep(20 * time.Millisecond) // Put has returned by now
		buf := make([]byte, 1<<16)
		for {
			n, err := r.Body.Read(buf)
			l.mu.Lock()
			l.lateBytes += n
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	defer close(answered)
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: io.NopCloser(strings.NewReader("busy")), Request: r}, nil
}

// Put never reads the caller's data after it returns, even when the
// transport goes on reading a request body after the answer (found by the
// race detector: the proxy reuses its buffer for the next block at once).
func TestKeepPut_noBodyReadAfterReturn(t *testing.T) {
	tr := &lingeringTransport{}
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", "http://127.0.0.1:1", "disk")},
		Replicas: 1, Retries: 1, RetryDelay: time.Millisecond, HTTPClient: &http.Client{Transport: tr}})
	data := bytes.Repeat([]byte("x"), 4<<20)
	_, err := k.Put(context.Background(), data, PutOptions{})
	require.ErrorIs(t, err, ErrInsufficientReplicas)
	for i := range data { // the caller reuses its buffer
		data[i] = 'y'
	}
	tr.wg.Wait()
	assert.Zero(t, tr.lateBytes, "body bytes read after Put returned")
}

// Talking HTTPS to a plain HTTP server, or to a certificate the client
// does not trust, is a configuration mistake: not retried for minutes, and
// the message says what to check.
func TestClient_configurationErrorsFailFast(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()
	selfSigned := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer selfSigned.Close()
	for _, tc := range []struct {
		url, hint string
	}{
		{plain.URL, "plain HTTP"},
		{selfSigned.URL, "ARVADOS_API_HOST_INSECURE=1"},
	} {
		c, err := NewClient(Config{APIHost: strings.TrimPrefix(strings.TrimPrefix(tc.url, "http://"), "https://"), MaxElapsed: time.Minute})
		require.NoError(t, err)
		_, err = c.CurrentUser(context.Background())
		require.Error(t, err)
		assert.False(t, IsTemporary(err), "not retried: %s: %v", tc.url, err)
		assert.Contains(t, err.Error(), tc.hint)
	}
}

// A StreamBody is written again for each attempt and sent with its exact
// length.
func TestClient_streamBodyRetried(t *testing.T) {
	var bodies []string
	var lengths []int64
	c, _ := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies, lengths = append(bodies, string(b)), append(lengths, r.ContentLength)
		if len(bodies) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"uuid":"zzzzz-4zz18-000000000000000"}`)
	})
	want := `{"collection":{"manifest_text":". d41d8cd98f00b204e9800998ecf8427e+0 0:0:x\n"}}`
	writes := 0
	body := StreamBody{Length: int64(len(want)), Write: func(w io.Writer) error {
		writes++
		_, err := io.WriteString(w, want)
		return err
	}}
	var out arvados.Collection
	require.NoError(t, c.Call(context.Background(), http.MethodPost, "arvados/v1/collections", nil, body, &out))
	assert.Equal(t, "zzzzz-4zz18-000000000000000", out.UUID)
	assert.Equal(t, 2, writes)
	assert.Equal(t, []string{want, want}, bodies)
	assert.Equal(t, []int64{int64(len(want)), int64(len(want))}, lengths)
}

// A 200 whose locator names another block, or this block with another
// size, stores nothing the manifest could reference: the service counts as
// failed (502), for Put as for PutStream, which share the request.
func TestKeepPut_answerMustNameTheBlock(t *testing.T) {
	data := []byte("the block")
	for name, answer := range map[string]string{
		"other hash":    arvados.HashOf([]byte("other")) + "+9",
		"other size":    arvados.HashOf(data) + "+8",
		"not a locator": "stored",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeKeepstore(t)
			f.fail = func(_ int, w http.ResponseWriter) bool {
				io.WriteString(w, answer+"\n")
				return true
			}
			k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{f.service(0, "disk")}, Replicas: 1, Retries: -1, RetryDelay: time.Millisecond})
			res, err := k.Put(context.Background(), data, PutOptions{})
			require.ErrorIs(t, err, ErrInsufficientReplicas)
			assert.Zero(t, res.Replicas)
			require.Len(t, res.Failures, 1)
			assert.Equal(t, http.StatusBadGateway, res.Failures[0].Status)
		})
	}
}
