package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a log sink the server and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] == "request" {
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
	var logs lockedBuffer
	e := newTestEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	signed := fooHash + "+3+A" + strings.Repeat("a", 40) + "@6b21f9d7"
	code, _, _ := do(t, "GET", e.ts.URL+"/"+signed, nil, map[string]string{"Authorization": "Bearer tok-active", "X-Request-Id": "req forged \" status=200"})
	assert.Equal(t, 405, code)
	code, _, _ = do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer nope"})
	assert.Equal(t, 403, code)
	lines := logs.lines(t)
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
