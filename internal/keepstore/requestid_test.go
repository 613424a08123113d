package keepstore

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_invalidRequestID: a client's X-Request-Id that
// httpx.ValidRequestID refuses (it could forge or bloat a log line) is
// neither echoed nor logged; a fresh ID is used in both.
func TestServer_invalidRequestID(t *testing.T) {
	ts := newTestServer(t, Options{})
	long := strings.Repeat("a", 500)
	for _, bad := range []string{`evil id" status=200 forged=1`, long} {
		resp, _ := ts.do(t, http.MethodGet, "/index", nil, "X-Request-Id: "+bad)
		assert.Regexp(t, `^req-[0-9a-z]{20}$`, resp.Header.Get("X-Request-Id"))
	}
	logs := ts.Logs.String()
	assert.NotContains(t, logs, "forged")
	assert.NotContains(t, logs, long[:65])
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] == "request" {
			ids = append(ids, m["request_id"].(string))
		}
	}
	require.Len(t, ids, 2)
	for _, id := range ids {
		assert.Regexp(t, `^req-[0-9a-z]{20}$`, id)
	}
}
