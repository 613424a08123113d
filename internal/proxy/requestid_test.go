package proxy

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_invalidRequestID: a client's X-Request-Id that
// httpx.ValidRequestID refuses (it could forge or bloat a log line) is
// neither echoed nor logged; a valid one is kept in both.
func TestServer_invalidRequestID(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	long := strings.Repeat("a", 500)
	for _, bad := range []string{`evil id" status=200 forged=1`, long} {
		_, h, _ := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer nope", "X-Request-Id": bad})
		assert.Regexp(t, `^req-[0-9a-z]{20}$`, h.Get("X-Request-Id"))
	}
	_, h, _ := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer nope", "X-Request-Id": "trace-42.A_b"})
	assert.Equal(t, "trace-42.A_b", h.Get("X-Request-Id"))
	text := logs.String()
	assert.NotContains(t, text, "forged")
	assert.NotContains(t, text, long[:65])
	lines := logLines(t, &logs, "msg", "request")
	require.Len(t, lines, 3)
	assert.Regexp(t, `^req-[0-9a-z]{20}$`, lines[0]["request_id"])
	assert.Regexp(t, `^req-[0-9a-z]{20}$`, lines[1]["request_id"])
	assert.Equal(t, "trace-42.A_b", lines[2]["request_id"])
}
