package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

const fooHash = "acbd18db4cc2f85cedef654fccc4a4d8" // md5("foo")

func TestServer_ServeHTTP_statuses(t *testing.T) {
	e := newTestEnv(t, nil)
	auth := map[string]string{"Authorization": "Bearer tok-active"}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer tok-active"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		hdr      map[string]string
		status   int
		wantBody string // exact, unless prefix
		prefix   bool
		replicas string // X-Keep-Replicas-Stored, "" = absent
	}{
		{"put bare hash", "PUT", "/" + fooHash, "foo", auth, 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"put with size hint", "PUT", "/" + fooHash + "+3", "foo", auth, 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"put with size and other hints", "PUT", "/" + fooHash + "+3+Kzzzzz+Afoo@123", "foo", auth, 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"put with OAuth2", "PUT", "/" + fooHash, "foo", map[string]string{"Authorization": "OAuth2 tok-active"}, 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"post computes hash", "POST", "/", "foo", auth, 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"empty block", "PUT", "/" + arvados.EmptyHash, "", auth, 200, arvados.EmptyBlock + "+Afake@00000000", false, "2"},
		{"desired replicas", "PUT", "/" + fooHash, "foo", with(map[string]string{"X-Keep-Desired-Replicas": "3"}), 200, fooHash + "+3+Afake@00000000", false, "3"},
		{"desired replicas 0 is default", "PUT", "/" + fooHash, "foo", with(map[string]string{"X-Keep-Desired-Replicas": "0"}), 200, fooHash + "+3+Afake@00000000", false, "2"},
		{"size hint mismatch", "PUT", "/" + fooHash + "+4", "foo", auth, 400, "Locator size hint does not match Content-Length header\n", false, ""},
		{"hash mismatch", "PUT", "/" + fooHash, "bar", auth, 422, "content hash 37b51d194a7513e45b56f6524f2d51f2 did not match specified locator " + fooHash + "\n", false, ""},
		{"no token", "PUT", "/" + fooHash, "foo", nil, 403, "Missing or invalid Authorization header, or method not allowed\n", false, ""},
		{"basic scheme", "PUT", "/" + fooHash, "foo", map[string]string{"Authorization": "Basic abc"}, 403, "Missing or invalid Authorization header, or method not allowed\n", false, ""},
		{"unknown token", "PUT", "/" + fooHash, "foo", map[string]string{"Authorization": "Bearer nope"}, 403, "Missing or invalid Authorization header, or method not allowed\n", false, ""},
		{"inactive user", "PUT", "/" + fooHash, "foo", map[string]string{"Authorization": "Bearer tok-inactive"}, 403, "Missing or invalid Authorization header, or method not allowed\n", false, ""},
		{"loop", "PUT", "/" + fooHash, "foo", with(map[string]string{"Via": "HTTP/1.1 keepproxy"}), 500, "loop detected\n", false, ""},
		{"read disabled", "GET", "/" + fooHash + "+3", "", auth, 405, "this proxy is write-only; reads are disabled (start it with --enable-reads)\n", false, ""},
		{"head disabled", "HEAD", "/" + fooHash, "", auth, 405, "", false, ""},
		{"wrong method on block", "DELETE", "/" + fooHash, "", auth, 405, "", false, ""},
		{"wrong method on root", "GET", "/", "", auth, 405, "", false, ""},
		{"upper-case hash", "PUT", "/" + strings.ToUpper(fooHash), "foo", auth, 400, "Bad Request\n", false, ""},
		{"double slash", "PUT", "//" + fooHash, "foo", auth, 400, "Bad Request\n", false, ""},
		{"index", "GET", "/index", "", auth, 400, "Bad Request\n", false, ""},
		{"status.json", "GET", "/status.json", "", auth, 400, "Bad Request\n", false, ""},
		{"bad hint", "PUT", "/" + fooHash + "+3+bad", "foo", auth, 400, "Bad Request\n", false, ""},
		{"options", "OPTIONS", "/anything", "", nil, 200, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := do(t, tt.method, e.ts.URL+tt.path, strings.NewReader(tt.body), tt.hdr)
			assert.Equal(t, tt.status, code)
			if tt.prefix {
				assert.True(t, strings.HasPrefix(body, tt.wantBody), body)
			} else {
				assert.Equal(t, tt.wantBody, body)
			}
			assert.Equal(t, tt.replicas, h.Get("X-Keep-Replicas-Stored"))
			assert.Equal(t, "GET, HEAD, PUT, OPTIONS, POST", h.Get("Access-Control-Allow-Methods"))
			assert.True(t, strings.HasPrefix(h.Get("X-Request-Id"), "req-"), h.Get("X-Request-Id"))
			if tt.method == "PUT" && tt.status != 500 && tt.status != 400 {
				assert.Equal(t, "HTTP/1.1 keepproxy", h.Get("Via"))
			}
			if tt.status == 200 && tt.method != "OPTIONS" {
				assert.Empty(t, h.Get("X-Keep-Storage-Classes-Confirmed"))
			}
		})
	}
}

func TestServer_put_forwardsRequest(t *testing.T) {
	e := newTestEnv(t, nil)
	code, h, body := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{
		"Authorization":           "OAuth2 tok-active",
		"X-Request-Id":            "req-0123456789abcdefghij",
		"X-Keep-Storage-Classes":  " hot ,, cold ",
		"X-Keep-Desired-Replicas": "junk",
	})
	require.Equal(t, 200, code, body)
	assert.Equal(t, "hot=2, cold=2", h.Get("X-Keep-Storage-Classes-Confirmed"))
	assert.Equal(t, "req-0123456789abcdefghij", h.Get("X-Request-Id"))
	require.Len(t, e.w.reqs, 1)
	assert.Equal(t, PutRequest{
		Hash: fooHash, Token: "tok-active", Replicas: 0,
		StorageClasses: []string{"hot", "cold"}, RequestID: "req-0123456789abcdefghij",
	}, e.w.reqs[0])
}

func TestServer_put_insufficientReplicas(t *testing.T) {
	e := newTestEnv(t, nil)
	e.w.replicas = 1
	e.w.fail = fmt.Errorf("put %s: %w", fooHash, keepclient.ErrInsufficientReplicas)
	code, h, body := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer tok-active"})
	assert.Equal(t, 503, code)
	assert.Equal(t, "Could not write sufficient replicas: [503] volume unavailable\n", body)
	assert.Equal(t, "1", h.Get("X-Keep-Replicas-Stored"))
	// One replica exists, so it is audited.
	require.Eventually(t, func() bool { n, _ := e.sink.count(); return n == 1 }, 10*time.Second, 10*time.Millisecond)
}

// rawRequest writes a request by hand (so that headers and body can lie)
// and returns the response. halfClose closes the write side after body.
func rawRequest(t *testing.T, addr, head, body string, halfClose bool) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, head+"\r\n"+body)
	require.NoError(t, err)
	if halfClose {
		require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r io.Reader) string {
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

func TestServer_put_lengthChecks(t *testing.T) {
	e := newTestEnv(t, nil)
	addr := strings.TrimPrefix(e.ts.URL, "http://")
	t.Run("too large, body never sent", func(t *testing.T) {
		resp := rawRequest(t, addr, fmt.Sprintf("PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-active\r\nContent-Length: %d\r\n", fooHash, arvados.BlockSize+1), "", false)
		assert.Equal(t, 413, resp.StatusCode)
		assert.Equal(t, "0", resp.Header.Get("X-Keep-Replicas-Stored"))
		assert.Equal(t, "Exceeded maximum block size (67108864)\n", readAll(t, resp.Body))
	})
	t.Run("chunked", func(t *testing.T) {
		resp := rawRequest(t, addr, fmt.Sprintf("PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-active\r\nTransfer-Encoding: chunked\r\n", fooHash), "3\r\nfoo\r\n0\r\n\r\n", false)
		assert.Equal(t, 411, resp.StatusCode)
		assert.Equal(t, "Length Required\n", readAll(t, resp.Body))
	})
	t.Run("short body", func(t *testing.T) {
		resp := rawRequest(t, addr, fmt.Sprintf("PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-active\r\nContent-Length: 10\r\n", fooHash), "foo", true)
		assert.Equal(t, 400, resp.StatusCode)
		assert.Contains(t, readAll(t, resp.Body), "expected 10 bytes")
	})
	assert.Equal(t, 0, e.w.stored())
}

func TestServer_put_stalledClient(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.BodyIdleTimeout = 200 * time.Millisecond })
	addr := strings.TrimPrefix(e.ts.URL, "http://")
	// Half the body, then nothing: the proxy must give up and store nothing.
	resp := rawRequest(t, addr, fmt.Sprintf("PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-active\r\nContent-Length: 3\r\n", fooHash), "fo", false)
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.Equal(t, 0, e.w.stored())
	// The slot was released: a normal PUT still works.
	code, _, body := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer tok-active"})
	assert.Equal(t, 200, code, body)
}

func TestServer_put_saturation(t *testing.T) {
	tests := []struct {
		name               string
		perUser, maxQueued int
		token              string // of the third PUT
		status             int
		body               string
	}{
		{"no queue, another user", 2, -1, "tok-other", 503, "proxy busy: too many concurrent uploads; retry later\n"},
		{"no queue, same user", 2, -1, "tok-active", 503, "too many uploads in progress for this user (2 running, 0 waiting); retry later\n"},
		{"queued until a slot frees", 2, 0, "tok-other", 200, fooHash + "+3+Afake@00000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *Options) { o.MaxConcurrent, o.MaxConcurrentPerUser, o.MaxQueued = 2, tt.perUser, tt.maxQueued })
			e.w.started = make(chan struct{})
			e.w.release = make(chan struct{})
			type result struct {
				code int
				hdr  http.Header
				body string
			}
			put := func(token string, results chan<- result) {
				req, _ := http.NewRequest("PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					results <- result{0, nil, err.Error()}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				results <- result{resp.StatusCode, resp.Header, string(b)}
			}
			first := make(chan result, 2)
			for range 2 {
				go put("tok-active", first)
			}
			<-e.w.started
			<-e.w.started
			third := make(chan result, 1)
			go put(tt.token, third)
			if tt.status == 200 {
				require.Eventually(t, func() bool { _, q := e.srv.adm.stats(); return q == 1 }, 10*time.Second, time.Millisecond)
				close(e.w.release) // the first two finish; the third gets a slot
				<-e.w.started
			} else {
				r := <-third
				assert.Equal(t, tt.status, r.code)
				assert.Equal(t, "1", r.hdr.Get("Retry-After"))
				assert.Equal(t, tt.body, r.body)
				close(e.w.release)
			}
			for range 2 {
				r := <-first
				assert.Equal(t, 200, r.code, r.body)
			}
			if tt.status == 200 {
				r := <-third
				assert.Equal(t, 200, r.code)
				assert.Equal(t, tt.body, r.body)
			}
		})
	}
}

func TestServer_ServeHTTP_management(t *testing.T) {
	tests := []struct {
		name, token, path, auth string
		status                  int
		body                    string
	}{
		{"health disabled", "", "/_health/ping", "", 404, "disabled\n"},
		{"health no auth", "m", "/_health/ping", "", 401, "Unauthorized\n"},
		{"health wrong auth", "m", "/_health/ping", "Bearer x", 403, "Forbidden\n"},
		{"health no bearer token", "m", "/_health/ping", "Basic bTpt", 401, "Unauthorized\n"},
		{"health OAuth2", "m", "/_health/ping", "OAuth2 m", 200, "{\"health\":\"OK\"}\n"},
		{"health other check", "m", "/_health/other", "Bearer m", 400, "Bad Request\n"},
		{"health ok", "m", "/_health/ping", "Bearer m", 200, "{\"health\":\"OK\"}\n"},
		// The proxy is public: /metrics is never open to anyone.
		{"metrics disabled without token", "", "/metrics", "", 404, "disabled\n"},
		{"metrics disabled, any auth", "", "/metrics", "Bearer anything", 404, "disabled\n"},
		{"metrics needs token", "m", "/metrics", "", 401, "Unauthorized\n"},
		{"metrics wrong token", "m", "/metrics", "Bearer x", 403, "Forbidden\n"},
		{"metrics client token", "m", "/metrics", "Bearer tok-active", 403, "Forbidden\n"},
		{"metrics ok", "m", "/metrics", "Bearer m", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *Options) { o.ManagementToken = tt.token })
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			code, _, body := do(t, "GET", e.ts.URL+tt.path, strings.NewReader(""), hdr)
			assert.Equal(t, tt.status, code)
			if tt.body != "" {
				assert.Equal(t, tt.body, body)
			}
			if tt.path == "/metrics" && code == 200 {
				assert.Contains(t, body, "arvupload_proxy_audit_spool_depth")
			}
		})
	}
}

func TestServer_metrics_counts(t *testing.T) {
	e := newTestEnv(t, nil)
	code, _, _ := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer tok-active"})
	require.Equal(t, 200, code)
	code, _, _ = do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer tok-active"})
	require.Equal(t, 200, code)
	_, _, body := do(t, "GET", e.ts.URL+"/metrics", strings.NewReader(""), map[string]string{"Authorization": "Bearer mgmt-token"})
	for _, want := range []string{
		`arvupload_proxy_requests_total{code="200",method="PUT"} 2`,
		`arvupload_proxy_received_bytes_total 6`,
		`arvupload_proxy_replicas_stored_total 4`,
		`arvupload_proxy_token_cache_total{result="hit"} 1`,
		`arvupload_proxy_token_cache_total{result="miss"} 1`,
		`arvupload_proxy_puts_in_flight 0`,
	} {
		assert.Contains(t, body, want)
	}
}

func TestServer_Close_finishesInFlight(t *testing.T) {
	e := newTestEnv(t, nil)
	e.w.started = make(chan struct{})
	e.w.release = make(chan struct{})
	got := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"))
		req.Header.Set("Authorization", "Bearer tok-active")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-e.w.started
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a PUT was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(e.w.release)
	assert.Equal(t, 200, <-got)
	require.NoError(t, <-closed)
	// The in-flight block's audit record was spooled before the 200 and
	// delivered by Close's drain.
	sp, err := OpenSpool(e.srv.opts.SpoolDir)
	require.NoError(t, err)
	defer sp.Close()
	n, _ := e.sink.count()
	assert.Equal(t, 1, n)
	assert.Equal(t, 0, sp.Depth())
}

var _ = context.Background

// TestServer_put_tokenExpiresDuringBody: a token that expires while its body
// arrives stores nothing.
func TestServer_put_tokenExpiresDuringBody(t *testing.T) {
	e := newTestEnv(t, nil)
	expires := time.Now().Add(time.Second)
	e.auth.set(func(a *fakeAuth) { a.expires = map[string]time.Time{"tok-active": expires} })
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-active\r\nContent-Length: 3\r\n\r\nfo", fooHash)
	require.NoError(t, err)
	time.Sleep(time.Until(expires) + 50*time.Millisecond)
	_, err = io.WriteString(conn, "o")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)
	assert.Equal(t, 0, e.w.stored())
}
