package broker_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBroker_invalidRequestID: a client's X-Request-Id that
// httpx.ValidRequestID refuses (it could forge or bloat a log line) is
// neither echoed nor logged, nor put in an error message.
func TestBroker_invalidRequestID(t *testing.T) {
	e := start(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	long := strings.Repeat("a", 500)
	for _, bad := range []string{`evil id" status=200 forged=1`, long} {
		req, err := http.NewRequest(http.MethodGet, "https://"+e.url+"/arvados/v1/uploader_accounts", nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-Id", bad)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Regexp(t, `^req-[0-9a-z]{20}$`, resp.Header.Get("X-Request-Id"))
	}
	for _, text := range []string{e.log.String(), e.bodies.String()} {
		assert.NotContains(t, text, "forged")
		assert.NotContains(t, text, long[:65])
	}
	assert.Equal(t, 2, strings.Count(e.log.String(), `"request_id":"req-`))
}
