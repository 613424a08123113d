package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestViaTransport_RoundTrip(t *testing.T) {
	var got string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Via") }))
	defer ts.Close()
	req, err := http.NewRequest(http.MethodPut, ts.URL, nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: ViaTransport(nil)}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "HTTP/1.1 keepproxy", got)
	assert.Empty(t, req.Header.Get("Via"), "the caller's request is not modified")
}

// A proxy pointed at itself (or another proxy) answers loop detected
// instead of recursing.
func TestViaTransport_loopDetected(t *testing.T) {
	e := newTestEnv(t, nil)
	req, err := http.NewRequest(http.MethodPut, e.ts.URL+"/"+fooHash, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok-active")
	resp, err := (&http.Client{Transport: ViaTransport(nil)}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 500, resp.StatusCode)
}

// gatedAuth blocks every check until released and counts calls.
type gatedAuth struct {
	mu      sync.Mutex
	calls   int
	release chan struct{}
}

func (g *gatedAuth) Authorize(ctx context.Context, token, requestID string) (Identity, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	<-g.release
	return Identity{User: activeUser("zzzzz-tpzed-000000000000001")}, nil
}

func TestAuthCache_check_concurrentMissesShareOneCall(t *testing.T) {
	g := &gatedAuth{release: make(chan struct{})}
	c := newAuthCache(g, 30e9, 2e9, 10)
	var misses atomic.Int32
	c.miss = func() { misses.Add(1) }
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := c.check(context.Background(), "tok", "")
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return misses.Load() == 8 }, 10*time.Second, time.Millisecond)
	close(g.release)
	for range 8 {
		require.NoError(t, <-errs)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	assert.Equal(t, 1, g.calls)
}
