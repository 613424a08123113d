package keepstore

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_Get_statuses(t *testing.T) {
	ts := newTestServer(t, Options{EnforceSigning: true})
	data := []byte("readable block")
	hash := arvados.HashOf(data)
	signed := ts.put(t, data, bearer(testV2Token))
	key := []byte(testKey)
	ttl := arvados.DefaultBlobSigningTTL
	expired := arvados.SignLocator(arvados.LocatorFor(data), testV2Token, time.Now().Add(-time.Minute), ttl, key)
	missing := []byte("never stored")
	missingSigned := arvados.SignLocator(arvados.LocatorFor(missing), testV2Token, time.Now().Add(time.Hour), ttl, key)
	bareSigned := strings.Replace(signed, "+"+"14", "", 1)
	require.NotEqual(t, signed, bareSigned)

	for _, tc := range []struct {
		name, method, path string
		headers            []string
		status             int
		body               string
	}{
		{"get signed v2", "GET", "/" + signed, []string{bearer(testV2Token)}, 200, string(data)},
		{"get double slash", "GET", "//" + signed, []string{bearer(testV2Token)}, 200, string(data)},
		{"head signed", "HEAD", "/" + signed, []string{bearer(testV2Token)}, 200, ""},
		{"head bare hash signed", "HEAD", "/" + bareSigned, []string{bearer(testV2Token)}, 200, ""},
		{"token in query", "GET", "/" + signed + "?api_token=" + testV2Token, nil, 200, string(data)},
		{"no token", "GET", "/" + signed, nil, 401, "no token provided in Authorization header\n"},
		{"expired", "GET", "/" + expired, []string{bearer(testV2Token)}, 401, "expired signature\n"},
		{"v1 spelling of the token", "GET", "/" + signed, []string{bearer(testV1Token)}, 400, "invalid signature\n"},
		{"unsigned", "GET", "/" + arvados.LocatorFor(data), []string{bearer(testV2Token)}, 400, "invalid signature\n"},
		{"malformed signature", "GET", "/" + arvados.LocatorFor(data) + "+Afff@1", []string{bearer(testV2Token)}, 400, "invalid signature\n"},
		{"no size hint", "GET", "/" + strings.Replace(signed, "+14", "", 1), []string{bearer(testV2Token)}, 405, "method not allowed\n"},
		{"invalid locator", "GET", "/" + strings.ToUpper(hash) + "+14", []string{bearer(testV2Token)}, 400, "invalid locator\n"},
		{"not found", "GET", "/" + missingSigned, []string{bearer(testV2Token)}, 404, "file does not exist\n"},
		{"head not found", "HEAD", "/" + missingSigned, []string{bearer(testV2Token)}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.do(t, tc.method, tc.path, nil, tc.headers...)
			assert.Equal(t, tc.status, resp.StatusCode, body)
			assert.Equal(t, tc.body, body)
			assert.Equal(t, "X-Keep-Signature", resp.Header.Get("Vary"))
			if tc.status == 200 {
				assert.Equal(t, int64(len(data)), resp.ContentLength)
			}
		})
	}
	t.Run("log has no signature or token", func(t *testing.T) {
		logs := ts.Logs.String()
		sig, _, _ := strings.Cut(strings.SplitN(signed, "+A", 2)[1], "@")
		assert.NotContains(t, logs, sig)
		assert.NotContains(t, logs, "examplesecret")
		assert.Contains(t, logs, `"path":"/`+hash+`+14"`)
	})
}

func TestServer_Get_signingNotEnforced(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := []byte("open block")
	ts.put(t, data)
	resp, body := ts.do(t, http.MethodGet, "/"+arvados.LocatorFor(data), nil)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, string(data), body)
}

func TestServer_Get_corruptBlock(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := []byte("will rot on disk")
	hash := arvados.HashOf(data)
	ts.put(t, data)
	require.NoError(t, os.WriteFile(filepath.Join(ts.Dir, hash[:3], hash), []byte("will rot on dusk"), 0o600))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body := ts.do(t, method, "/"+arvados.LocatorFor(data), nil)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, method)
		if method == http.MethodGet {
			assert.Equal(t, "checksum mismatch in stored data\n", body)
		}
	}
}
