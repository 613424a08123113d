package proxy

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logLines are the JSON lines logged to l whose field key is value.
func logLines(t *testing.T, l *syncBuffer, key, value string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m[key] == value {
			out = append(out, m)
		}
	}
	return out
}

// Issue 14.7 and 16.2: the proxy's request line has the fields and units
// the other daemons use (path as received without signatures, bytes_out,
// duration_ms, WARN for refusals), and a client's request ID is used only
// when it is valid, so no client string forges a log line.
func TestServer_requestLogLine(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	signed := fooHash + "+3+A" + strings.Repeat("a", 40) + "@6b21f9d7"
	code, _, _ := do(t, "GET", e.ts.URL+"/"+signed, nil, map[string]string{"Authorization": "Bearer tok-active", "X-Request-Id": "req forged \" status=200"})
	assert.Equal(t, 405, code)
	code, _, _ = do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer nope"})
	assert.Equal(t, 403, code)
	lines := logLines(t, &logs, "msg", "request")
	require.Len(t, lines, 2)
	get, put := lines[0], lines[1]
	assert.Equal(t, "/"+fooHash+"+3", get["path"], "as received, without the signature")
	assert.NotContains(t, get["request_id"], "forged")
	assert.Regexp(t, `^req-[0-9a-z]{20}$`, get["request_id"])
	for _, m := range lines {
		assert.Contains(t, m, "duration_ms")
		assert.Contains(t, m, "bytes_out")
		assert.NotContains(t, m, "duration")
	}
	assert.Equal(t, "INFO", get["level"])
	assert.Equal(t, "WARN", put["level"], "a refused token")
}
