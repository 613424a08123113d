package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/internal/testutil"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openWith starts a Server with opts (DataDir filled in) over real HTTP.
func openWith(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := Open(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

// rawResponse is what a raw connection read back before the deadline.
type rawResponse struct {
	status int
	body   string
	err    error
}

// sendPartial writes head and the first bytes of a body that head
// promises to be longer, then waits (up to wait) for the response without
// sending the rest. It returns the connection for the caller to finish or
// close.
func sendPartial(t *testing.T, ts *httptest.Server, head, partial string) (net.Conn, <-chan rawResponse) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, head+"\r\n"+partial)
	require.NoError(t, err)
	out := make(chan rawResponse, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			out <- rawResponse{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- rawResponse{status: resp.StatusCode, body: string(b), err: err}
	}()
	return conn, out
}

func waitResponse(t *testing.T, ch <-chan rawResponse, wait time.Duration) rawResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(wait):
		t.Fatalf("no response within %s: the server still waits for the body", wait)
		return rawResponse{}
	}
}

// Issue 14.6: a client whose Content-Length promised more than it sent
// held its connection (and, now, a request slot) forever.
func TestServer_bodyDeadlines(t *testing.T) {
	s, ts := openWith(t, Options{BodyIdleTimeout: 200 * time.Millisecond, BodyTimeout: 1500 * time.Millisecond})
	tok := s.AdminToken()
	post := "POST /arvados/v1/collections HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + tok +
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	for _, tc := range []struct {
		name, head string
		drip       bool // keep sending a byte every 50 ms
		status     int
		msg        string
	}{
		{name: "stalled body", head: post, status: 408, msg: "request body stalled"},
		{name: "slow body", head: post, drip: true, status: 408, msg: "request body took longer"},
		// A handler that never reads the body must not wait for the rest of
		// it before answering either.
		{name: "unread body", head: "GET /discovery/v1/apis/arvados/v1/rest HTTP/1.1\r\nHost: api\r\nContent-Length: 1000\r\n", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, ch := sendPartial(t, ts, tc.head, `{"collection":`)
			if tc.drip {
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
							if _, err := conn.Write([]byte(" ")); err != nil {
								return
							}
						}
					}
				}()
			}
			r := waitResponse(t, ch, 15*time.Second)
			require.NoError(t, r.err)
			assert.Equal(t, tc.status, r.status, r.body)
			assert.Contains(t, r.body, tc.msg)
		})
	}
	// The server goes on serving.
	r := apiCall(t, ts, tok, "GET", "/arvados/v1/users/current", "", "")
	assert.Equal(t, 200, r.status, r.raw)
}

func TestServer_concurrencyLimit(t *testing.T) {
	s, ts := openWith(t, Options{MaxConcurrentRequests: 1, BodyIdleTimeout: time.Minute})
	tok := s.AdminToken()
	body := `{"collection":{"name":"held"}}`
	head := fmt.Sprintf("POST /arvados/v1/collections HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n", tok, len(body))
	// The first request holds the only slot while its body is incomplete.
	conn, held := sendPartial(t, ts, head, body[:5])
	var busy reply
	require.Eventually(t, func() bool {
		busy = apiCall(t, ts, tok, "GET", "/arvados/v1/users/current", "", "")
		return busy.status == 503
	}, 10*time.Second, 10*time.Millisecond, "a second request must get 503 while the slot is held")
	assert.Contains(t, busy.body["errors"].([]any)[0], "server busy")
	req, err := http.NewRequest("GET", ts.URL+"/arvados/v1/users/current", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))

	// Metrics stay reachable while the API is saturated.
	resp, err = http.Get(ts.URL + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	// The held request completes, and the slot is free again.
	_, err = io.WriteString(conn, body[5:])
	require.NoError(t, err)
	r := waitResponse(t, held, 10*time.Second)
	require.NoError(t, r.err)
	assert.Equal(t, 200, r.status, r.body)
	assert.Equal(t, 200, apiCall(t, ts, tok, "GET", "/arvados/v1/users/current", "", "").status)
}

func TestServer_health(t *testing.T) {
	const mgmt = "management-secret"
	_, open := openWith(t, Options{})
	s, guarded := openWith(t, Options{ManagementToken: mgmt})
	for _, tc := range []struct {
		name   string
		ts     *httptest.Server
		auth   string
		status int
	}{
		{"no management token: disabled", open, "Bearer " + mgmt, 404},
		{"no credentials", guarded, "", 401},
		{"wrong token", guarded, "Bearer other", 403},
		{"user token", guarded, "Bearer " + s.AdminToken(), 403},
		{"management token", guarded, "Bearer " + mgmt, 200},
		{"OAuth2 spelling", guarded, "OAuth2 " + mgmt, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", tc.ts.URL+"/_health/ping", nil)
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode, string(b))
			if tc.status == 200 {
				assert.JSONEq(t, `{"health":"OK"}`, string(b))
			}
		})
	}
	// A store that no longer answers is unhealthy.
	require.NoError(t, s.store.Close())
	req, err := http.NewRequest("GET", guarded.URL+"/_health/ping", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+mgmt)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, string(b), `"health":"ERROR"`)
}

func TestServer_metrics(t *testing.T) {
	const mgmt = "management-secret"
	ctx := context.Background()
	s, ts := openWith(t, Options{ManagementToken: mgmt})
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	c := client(t, ts, tok)
	_, err = c.CurrentUser(ctx)
	require.NoError(t, err)
	coll, err := c.CreateCollection(ctx, map[string]any{"name": "c"}, false)
	require.NoError(t, err)
	_, err = c.GetCollection(ctx, coll.UUID)
	require.NoError(t, err)
	_, err = client(t, ts, "v2/zzzzz-gj3su-000000000000077/nope").CurrentUser(ctx)
	require.Error(t, err)

	get := func(auth string) (int, string) {
		req, err := http.NewRequest("GET", ts.URL+"/metrics", nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get("")
	assert.Equal(t, 401, code)
	code, _ = get("Bearer " + tok)
	assert.Equal(t, 403, code)
	code, text := get("Bearer " + mgmt)
	require.Equal(t, 200, code)
	for _, want := range []string{
		`arvupload_api_requests_total{code="200",method="GET",route="/arvados/v1/users/current"} 1`,
		`arvupload_api_requests_total{code="401",method="GET",route="/arvados/v1/users/current"} 1`,
		`arvupload_api_requests_total{code="200",method="POST",route="/arvados/v1/collections"} 1`,
		`arvupload_api_requests_total{code="200",method="GET",route="/arvados/v1/collections/{id}"} 1`,
		`arvupload_api_request_duration_seconds_count{route="/arvados/v1/collections/{id}"} 1`,
		`arvupload_api_store_objects{resource="collections"} 1`,
		`arvupload_api_store_objects{resource="users"} 3`, // system, admin, U
		`arvupload_api_max_concurrent_requests 16`,
		`arvupload_api_requests_in_flight 0`,
		`arvupload_api_store_bytes `,
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, coll.UUID, "object IDs stay out of the labels")
}

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"/_health/ping":                      "/_health/ping",
		"/metrics":                           "/metrics",
		"/discovery/v1/apis/arvados/v1/rest": "/discovery/v1/apis/arvados/v1/rest",
		"/arvados/v1/config":                 "/arvados/v1/config",
		"/arvados/v1/collections":            "/arvados/v1/collections",
		"/arvados/v1/collections/":           "/arvados/v1/collections",
		"/arvados/v1/collections/zzzzz-4zz18-0123456789abcde":                  "/arvados/v1/collections/{id}",
		"/arvados/v1/collections/acbd18db4cc2f85cedef654fccc4a4d8+3":           "/arvados/v1/collections/{id}",
		"/arvados/v1/users/current":                                            "/arvados/v1/users/current",
		"/arvados/v1/keep_services/accessible":                                 "/arvados/v1/keep_services/accessible",
		"/arvados/v1/uploader_accounts/zzzzz-tpzed-0123456789abcde/deactivate": "/arvados/v1/uploader_accounts/{id}/deactivate",
		"/arvados/v1/collections/anything-else":                                "other",
		"/arvados/v1/nosuch":                                                   "other",
		"/arvados/v1/users/zzzzz-tpzed-0123456789abcde/x":                      "other",
		"/":         "other",
		"/../etc":   "other",
		"/x/y/z/w/": "other",
	} {
		assert.Equal(t, want, routeOf(path), path)
	}
}

// Issue 14.7: one request line in every daemon, with the same fields and
// units; refused credentials at WARN; never a token.
func TestServer_requestLog(t *testing.T) {
	ctx := context.Background()
	logs := &syncBuffer{}
	s, ts := openWith(t, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	u, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	r := apiCall(t, ts, tok, "GET", "/arvados/v1/users/current", "", "")
	require.Equal(t, 200, r.status)
	r = apiCall(t, ts, "v2/zzzzz-gj3su-000000000000077/nopesecret", "GET", "/arvados/v1/users/current", "", "")
	require.Equal(t, 401, r.status)
	scoped := apiCall(t, ts, tok, "POST", "/arvados/v1/api_client_authorizations", "application/json",
		`{"api_client_authorization":{"scopes":["GET /arvados/v1/users/current"]}}`)
	require.Equal(t, 200, scoped.status, scoped.raw)
	scopedTok := "v2/" + scoped.body["uuid"].(string) + "/" + scoped.body["api_token"].(string)
	r = apiCall(t, ts, scopedTok, "GET", "/arvados/v1/collections", "", "")
	require.Equal(t, 403, r.status)

	text := logs.String()
	assert.NotContains(t, text, "nopesecret")
	assert.NotContains(t, text, scoped.body["api_token"].(string))
	assert.NotContains(t, text, tok[strings.LastIndexByte(tok, '/')+1:])
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "not a JSON line: %q", l)
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 4)
	for _, l := range lines {
		for _, f := range []string{"request_id", "remote_addr", "method", "path", "status", "bytes_in", "bytes_out", "duration_ms"} {
			assert.Contains(t, l, f)
		}
		assert.NotContains(t, l, "duration")
	}
	assert.Equal(t, "INFO", lines[0]["level"])
	assert.Equal(t, "/arvados/v1/users/current", lines[0]["path"])
	assert.Equal(t, u.UUID, lines[0]["user_uuid"])
	assert.EqualValues(t, 200, lines[0]["status"])
	assert.Equal(t, "WARN", lines[1]["level"], "refused token")
	assert.EqualValues(t, 401, lines[1]["status"])
	assert.Equal(t, "WARN", lines[3]["level"], "refused by scope")
	assert.EqualValues(t, 403, lines[3]["status"])
}

// syncBuffer is a log sink the tests read while servers write it.
type syncBuffer = testutil.SyncBuffer

// TestServer_authorizationSchemes: the API server reads the token as every
// arv-server daemon does (httpx.BearerToken): Bearer or OAuth2, the scheme
// in any case; a scheme without a token is no token.
func TestServer_authorizationSchemes(t *testing.T) {
	ctx := context.Background()
	s, ts := openWith(t, Options{})
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	for _, c := range []struct {
		header string
		want   int
	}{
		{"Bearer " + tok, 200},
		{"OAuth2 " + tok, 200},
		{"bearer " + tok, 200},
		{"Bearer  " + tok + " ", 200},
		{"Bearer", 401},
		{"Basic " + tok, 401},
	} {
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/arvados/v1/users/current", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", c.header)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, c.want, resp.StatusCode, "Authorization: %s", strings.Replace(c.header, tok, "<token>", 1))
	}
}
