package apiserver

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_invalidRequestID: the API server keeps a client's
// X-Request-Id by the rule of every server (httpx.ValidRequestID): one it
// refuses (it could forge or bloat a log line) is neither echoed, nor
// logged, nor put in an error message; a valid one is kept in all three.
func TestServer_invalidRequestID(t *testing.T) {
	logs := &syncBuffer{}
	_, ts := openWith(t, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	long := strings.Repeat("a", 500)
	get := func(id string) (string, string) {
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/arvados/v1/users/current", nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct{ Errors []string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Len(t, body.Errors, 1)
		return resp.Header.Get("X-Request-Id"), body.Errors[0]
	}
	for _, bad := range []string{`evil id" status=200 forged=1`, long} {
		id, msg := get(bad)
		assert.Regexp(t, `^req-[0-9a-z]{20}$`, id)
		assert.Contains(t, msg, "("+id+")", "the error names the ID used")
	}
	id, msg := get("trace-42.A_b")
	assert.Equal(t, "trace-42.A_b", id)
	assert.Contains(t, msg, "(trace-42.A_b)")

	text := logs.String()
	assert.NotContains(t, text, "forged")
	assert.NotContains(t, text, long[:65])
	var ids []any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if m["msg"] == "request" {
			ids = append(ids, m["request_id"])
		}
	}
	require.Len(t, ids, 3)
	assert.Regexp(t, `^req-[0-9a-z]{20}$`, ids[0])
	assert.Regexp(t, `^req-[0-9a-z]{20}$`, ids[1])
	assert.Equal(t, "trace-42.A_b", ids[2])
}
