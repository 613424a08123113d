package httpx

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serving runs Serve in the background and returns its listener's URL and
// the channel of its result.
func serving(t *testing.T, ctx context.Context, srv *http.Server, timeout time.Duration) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	scheme := "http"
	if srv.TLSConfig != nil { // read before Serve, which changes it
		scheme = "https"
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, timeout) }()
	t.Cleanup(func() { srv.Close() })
	return scheme + "://" + ln.Addr().String(), done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func TestServe_stopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	url, done := serving(t, ctx, srv, time.Minute)
	resp, err := http.Get(url)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(body))

	cancel()
	require.NoError(t, result(t, done))
	_, err = net.Dial("tcp", url[len("http://"):])
	assert.Error(t, err, "the listener is closed")
}

// A request in flight when the context ends is answered in full before
// Serve returns.
func TestServe_finishesInFlightRequests(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "all of it")
		finished.Store(true)
	})}
	url, done := serving(t, ctx, srv, time.Minute)
	type reply struct {
		body string
		err  error
	}
	replies := make(chan reply, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			replies <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		replies <- reply{string(b), err}
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, result(t, done))
	assert.True(t, finished.Load())
	r := <-replies
	require.NoError(t, r.err)
	assert.Equal(t, "all of it", r.body)
}

// A request still running at the shutdown timeout loses its connection,
// and Serve says the shutdown did not finish.
func TestServe_shutdownTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})}
	url, done := serving(t, ctx, srv, 100*time.Millisecond)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	err := result(t, done)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "shut down HTTP server")
	assert.Error(t, <-errc, "the client's connection was closed")
}

// Serving that fails (here: on a closed listener) is Serve's error.
func TestServe_returnsServeError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()
	err = Serve(context.Background(), &http.Server{Handler: http.NotFoundHandler()}, ln, time.Second)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorContains(t, err, "serve: ")
}

// With a TLSConfig, Serve serves HTTPS.
func TestServe_TLS(t *testing.T) {
	// httptest's certificate (for 127.0.0.1) and a client that trusts it.
	certs := httptest.NewTLSServer(http.NotFoundHandler())
	defer certs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { assert.NotNil(t, r.TLS) }),
		TLSConfig: &tls.Config{Certificates: certs.TLS.Certificates},
	}
	url, done := serving(t, ctx, srv, time.Minute)
	require.True(t, strings.HasPrefix(url, "https://"))
	client := certs.Client()
	resp, err := client.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	client.CloseIdleConnections()
	cancel()
	require.NoError(t, result(t, done))
}
