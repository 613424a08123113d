package httpx

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
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
