package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBearerToken(t *testing.T) {
	const v2 = "v2/zzzzz-gj3su-0123456789abcde/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
	for _, c := range []struct {
		header string
		want   string
		ok     bool
	}{
		// PROTOCOL 1.2: both schemes, v1 and v2 tokens.
		{"Bearer " + v2, v2, true},
		{"OAuth2 " + v2, v2, true},
		{"Bearer 3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi", "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi", true},
		// Spaces around the token are not part of it.
		{"Bearer   tok  ", "tok", true},
		{"  Bearer tok", "tok", true},
		// The scheme is case-insensitive (RFC 7235).
		{"bearer tok", "tok", true},
		{"BEARER tok", "tok", true},
		{"oauth2 tok", "tok", true},
		// No token.
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"OAuth2", "", false},
		// Other schemes, and a scheme without its space.
		{"Basic dXNlcjpwYXNz", "", false},
		{"Token tok", "", false},
		{"Bearertok", "", false},
		{"Bearer\ttok", "", false},
		{"XBearer tok", "", false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		got, ok := BearerToken(r)
		assert.Equal(t, c.want, got, "%q", c.header)
		assert.Equal(t, c.ok, ok, "%q", c.header)
	}
	// A token with spaces inside keeps them (only the ends are trimmed).
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.Header.Set("Authorization", "Bearer a b")
	got, _ := BearerToken(r)
	assert.Equal(t, "a b", got)
}

func TestLogRequest(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	r := httptest.NewRequest(http.MethodPut, "/acbd18db4cc2f85cedef654fccc4a4d8+3+A0123456789abcdef0123456789abcdef01234567@6b21f9d7", nil)
	LogRequest(context.Background(), log, r, Access{ID: "req-x", BytesIn: 3, BytesOut: 92, Duration: 1500 * time.Microsecond},
		slog.String("user_uuid", "zzzzz-tpzed-000000000000000"))
	LogRequest(context.Background(), log, r, Access{ID: "req-y", Status: http.StatusForbidden})
	LogRequest(context.Background(), log, r, Access{ID: "req-z", Status: http.StatusInternalServerError})
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	require.Len(t, lines, 3)
	first := lines[0]
	assert.Equal(t, "request", first["msg"])
	assert.Equal(t, "INFO", first["level"])
	assert.Equal(t, "req-x", first["request_id"])
	assert.Equal(t, r.RemoteAddr, first["remote_addr"])
	assert.Equal(t, "PUT", first["method"])
	assert.Equal(t, "/acbd18db4cc2f85cedef654fccc4a4d8+3", first["path"], "no signature in the log")
	assert.EqualValues(t, 200, first["status"], "nothing written is 200")
	assert.EqualValues(t, 3, first["bytes_in"])
	assert.EqualValues(t, 92, first["bytes_out"])
	assert.EqualValues(t, 1.5, first["duration_ms"])
	assert.Equal(t, "zzzzz-tpzed-000000000000000", first["user_uuid"])
	assert.Equal(t, "WARN", lines[1]["level"])
	assert.EqualValues(t, 403, lines[1]["status"])
	assert.NotContains(t, lines[1], "user_uuid")
	assert.Equal(t, "ERROR", lines[2]["level"])
}

func TestTokenStatus(t *testing.T) {
	assert.Equal(t, http.StatusOK, TokenStatus("mgmt", "mgmt"))
	assert.Equal(t, http.StatusUnauthorized, TokenStatus("", "mgmt"), "no token")
	assert.Equal(t, http.StatusForbidden, TokenStatus("other", "mgmt"))
	assert.Equal(t, http.StatusForbidden, TokenStatus("mgm", "mgmt"), "a prefix is another token")
	assert.Equal(t, http.StatusForbidden, TokenStatus("mgmt", ""), "no token matches an unset one")
	assert.Equal(t, http.StatusUnauthorized, TokenStatus("", ""))
}
