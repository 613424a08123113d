package keepstore

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_index(t *testing.T) {
	ts := newTestServer(t, Options{})
	t.Run("empty", func(t *testing.T) {
		resp, body := ts.do(t, http.MethodGet, "/index", nil, bearer(testRootToken))
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "\n", body)
	})
	var lines []string
	for i := range 20 {
		data := randomBlock(int64(200+i), 100+i)
		ts.put(t, data)
		hash := arvados.HashOf(data)
		mtime := time.Unix(1700000000+int64(i), 123)
		require.NoError(t, os.Chtimes(filepath.Join(ts.Dir, hash[:3], hash), mtime, mtime))
		lines = append(lines, fmt.Sprintf("%s+%d %d\n", hash, len(data), mtime.UnixNano()))
	}
	slices.Sort(lines)
	want := func(prefix string) string {
		var b strings.Builder
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				b.WriteString(l)
			}
		}
		return b.String() + "\n"
	}
	p1, p3 := lines[0][:1], lines[0][:3]
	for _, tc := range []struct {
		name, path string
		headers    []string
		status     int
		body       string
	}{
		{"all", "/index", []string{bearer(testRootToken)}, 200, want("")},
		{"path prefix", "/index/" + p1, []string{bearer(testRootToken)}, 200, want(p1)},
		{"query prefix", "/index?prefix=" + p3, []string{bearer(testRootToken)}, 200, want(p3)},
		{"no match", "/index/0000000", []string{bearer(testRootToken)}, 200, want("0000000")},
		{"bad prefix", "/index/XYZ", []string{bearer(testRootToken)}, 400, "invalid prefix\n"},
		{"no token", "/index", nil, 401, "Unauthorized\n"},
		{"user token", "/index", []string{bearer(testV2Token)}, 403, "Forbidden\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodGet, tc.path, nil, tc.headers...)
			assert.Equal(t, tc.status, resp.StatusCode, body)
			assert.Equal(t, tc.body, body)
		})
	}
}

func TestServer_health(t *testing.T) {
	withToken := newTestServer(t, Options{ManagementToken: testMgmtToken})
	without := newTestServer(t, Options{ManagementToken: "-"})
	for _, tc := range []struct {
		name    string
		ts      *testServer
		headers []string
		status  int
		body    string
	}{
		{"ok", withToken, []string{bearer(testMgmtToken)}, 200, `{"health":"OK"}` + "\n"},
		{"no header", withToken, nil, 401, "Unauthorized\n"},
		{"wrong token", withToken, []string{bearer(testRootToken)}, 403, "Forbidden\n"},
		{"disabled", without, []string{bearer(testMgmtToken)}, 404, "disabled\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.ts.do(t, http.MethodGet, "/_health/ping", nil, tc.headers...)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, body)
		})
	}
}

func TestServer_metrics(t *testing.T) {
	ts := newTestServer(t, Options{ManagementToken: testMgmtToken})
	ts.put(t, []byte("counted"))
	resp, _ := ts.do(t, http.MethodGet, "/metrics", nil)
	assert.Equal(t, 401, resp.StatusCode)
	resp, _ = ts.do(t, http.MethodGet, "/metrics", nil, bearer("wrong"))
	assert.Equal(t, 403, resp.StatusCode)
	resp, body := ts.do(t, http.MethodGet, "/metrics", nil, bearer(testMgmtToken))
	require.Equal(t, 200, resp.StatusCode)
	for _, want := range []string{
		`arvupload_keepstore_requests_total{code="200",method="PUT"} 1`,
		`arvupload_keepstore_received_bytes_total 7`,
		`arvupload_keepstore_buffers_in_use 0`,
		`arvupload_keepstore_buffers_max 8`,
		`arvupload_keepstore_put_duration_seconds_count 1`,
		`arvupload_keepstore_sent_bytes_total`,
	} {
		assert.Contains(t, body, want)
	}

	// Any token is a valid method: invented ones share one label, so a
	// client cannot grow the metrics without bound.
	for i := range 5 {
		resp, _ = ts.do(t, fmt.Sprintf("INVENTED%d", i), "/"+arvados.EmptyHash, nil)
		assert.Equal(t, 400, resp.StatusCode)
	}
	_, body = ts.do(t, http.MethodGet, "/metrics", nil, bearer(testMgmtToken))
	assert.NotContains(t, body, "INVENTED")
	assert.Contains(t, body, `arvupload_keepstore_requests_total{code="400",method="other"} 5`)

	open := newTestServer(t, Options{ManagementToken: "-"})
	resp, _ = open.do(t, http.MethodGet, "/metrics", nil)
	assert.Equal(t, 200, resp.StatusCode, "metrics are open without a management token")
}

func TestServer_CORS(t *testing.T) {
	ts := newTestServer(t, Options{})
	want := map[string]string{
		"Access-Control-Allow-Methods":  "GET, HEAD, PUT, OPTIONS",
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Headers":  "Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes",
		"Access-Control-Expose-Headers": "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed",
		"Access-Control-Max-Age":        "86486400",
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodOptions, "/" + arvados.EmptyHash, 200},
		{http.MethodOptions, "/anything/at/all", 200},
		{http.MethodGet, "/status.json", 400},
		{http.MethodPut, "/" + arvados.EmptyHash, 200},
	} {
		resp, body := ts.do(t, tc.method, tc.path, []byte{})
		assert.Equal(t, tc.status, resp.StatusCode, tc.method+" "+tc.path)
		if tc.method == http.MethodOptions {
			assert.Empty(t, body)
		}
		for k, v := range want {
			assert.Equal(t, v, resp.Header.Get(k), k)
		}
	}
}

func TestServer_requestIDAndLog(t *testing.T) {
	ts := newTestServer(t, Options{})
	resp, _ := ts.do(t, http.MethodPut, "/"+arvados.EmptyHash, []byte{}, "X-Request-Id: req-0123456789abcdefghij", bearer(testV2Token))
	assert.Equal(t, "req-0123456789abcdefghij", resp.Header.Get("X-Request-Id"))
	resp, _ = ts.do(t, http.MethodPut, "/"+arvados.EmptyHash, []byte{})
	generated := resp.Header.Get("X-Request-Id")
	assert.Regexp(t, regexp.MustCompile(`^req-[0-9a-z]{20}$`), generated)
	resp, _ = ts.do(t, http.MethodGet, "/index", nil, "X-Request-Id: bad id\twith tabs")
	assert.Regexp(t, regexp.MustCompile(`^req-[0-9a-z]{20}$`), resp.Header.Get("X-Request-Id"))

	logs := ts.Logs.String()
	assert.NotContains(t, logs, "examplesecret")
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		entries = append(entries, m)
	}
	require.Len(t, entries, 3)
	first := entries[0]
	assert.Equal(t, "req-0123456789abcdefghij", first["request_id"])
	assert.Equal(t, "PUT", first["method"])
	assert.Equal(t, "/"+arvados.EmptyHash, first["path"])
	assert.EqualValues(t, 200, first["status"])
	assert.EqualValues(t, len(arvados.EmptyBlock+"+A")+40+1+8+1, first["bytes_out"], "signed locator and newline")
	assert.Contains(t, first, "duration_ms")
	assert.Contains(t, first["remote_addr"], "127.0.0.1:")
	assert.Equal(t, "INFO", first["level"])
	assert.Equal(t, generated, entries[1]["request_id"])
	assert.EqualValues(t, 401, entries[2]["status"])
	assert.Equal(t, "WARN", entries[2]["level"], "a refused request is worth a look")
}

func TestNew_options(t *testing.T) {
	_, err := New(Options{Dir: t.TempDir(), EnforceSigning: true})
	assert.Error(t, err, "enforcing signatures needs a key")
	_, err = New(Options{})
	assert.Error(t, err, "no directory")
	_, err = New(Options{Dir: t.TempDir(), MaxBuffers: -1})
	assert.Error(t, err)
	s, err := New(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, defaultMaxBuffers, s.opts.MaxBuffers)
	assert.Equal(t, []string{"default"}, s.opts.StorageClasses)
	assert.Equal(t, arvados.DefaultBlobSigningTTL, s.opts.TTL)
}
