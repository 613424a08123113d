package httpx

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRequestID(t *testing.T) {
	fresh := `^req-[0-9a-z]{20}$`
	for _, c := range []struct {
		sent string
		kept bool
	}{
		{"req-0123456789abcdefghij", true},
		{"trace-1.2_A", true}, // not ours, but harmless in a log
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 500), false},
		{`evil id" status=200`, false},
		{"evil\nid", false},
		{"evil\tid", false},
		{"ïd", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.sent != "" {
			r.Header.Set("X-Request-Id", c.sent)
		}
		w := httptest.NewRecorder()
		id := RequestID(w, r)
		if c.kept {
			assert.Equal(t, c.sent, id)
		} else {
			assert.Regexp(t, fresh, id, "%q", c.sent)
		}
		assert.Equal(t, id, w.Header().Get("X-Request-Id"), "the response carries the ID used")
		assert.Equal(t, id, r.Header.Get("X-Request-Id"), "the handlers see the ID used")
	}
	a, b := NewRequestID(), NewRequestID()
	assert.NotEqual(t, a, b)
}
