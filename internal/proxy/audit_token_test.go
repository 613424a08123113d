package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/apiserver"
	"github.com/arv-upload/arv-upload/keepclient"
)

// auditCluster is a real cluster whose API server names a dedicated,
// non-admin audit user (arv-server api --audit-user); the proxy posts its
// records with that user's token scoped to POST /arvados/v1/logs.
func auditCluster(t *testing.T, mod func(*Options)) (c *realCluster, auditor arvados.User, newAuditToken func(scopes ...string) arvados.APIClientAuthorization) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	api, err := apiserver.Open(apiserver.Options{DataDir: dir})
	require.NoError(t, err)
	auditor, _, err = api.CreateUser(ctx, arvados.User{FullName: "arv-upload proxy audit", IsActive: true})
	require.NoError(t, err)
	require.NoError(t, api.Close())
	api, err = apiserver.Open(apiserver.Options{DataDir: dir, AuditUsers: []string{auditor.UUID}})
	require.NoError(t, err)
	c = newRealClusterAPI(t, api, mod, nil)
	newAuditToken = func(scopes ...string) arvados.APIClientAuthorization {
		var tok arvados.APIClientAuthorization
		require.NoError(t, c.client(c.api.AdminToken()).Call(ctx, http.MethodPost, "arvados/v1/api_client_authorizations", nil,
			map[string]any{"api_client_authorization": map[string]any{"owner_uuid": auditor.UUID, "scopes": scopes}}, &tok))
		return tok
	}
	return c, auditor, newAuditToken
}

func (c *realCluster) health(t *testing.T) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.proxyTS.URL+"/_health/ping", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer mgmt-token")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return resp.StatusCode, m
}

func (c *realCluster) metricsText(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.proxyTS.URL+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer mgmt-token")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// Issue 12.3: the audit token expires (or is revoked, or lacks the scope):
// the proxy keeps storing blocks and spooling their records, says so in
// one error line a minute, in a metric and in its health check, and
// delivers every record exactly once when a valid token is configured
// (SetAuditToken, which SIGHUP calls in arv-server proxy).
func TestServer_audit_refusedTokenThenReload(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	c, auditor, newAuditToken := auditCluster(t, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		// A minute, as in production: the test takes far less, so
		// exactly one line per refused token.
		o.AuditRefusedLogInterval = time.Minute
	})
	tokA := newAuditToken("POST /arvados/v1/logs")
	c.proxy.SetAuditToken(tokA.APIToken)
	_, user := c.newUser(t, "uploader")

	// The scoped token of a non-admin audit user delivers.
	code, _, body := c.put(t, user, 100)
	require.Equal(t, 200, code, body)
	require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 10*time.Second, 5*time.Millisecond)

	// The token is revoked (as an expired one, 401): writes go on, records wait.
	root := c.client(c.api.SystemRootToken())
	require.NoError(t, root.Call(ctx, http.MethodDelete, "arvados/v1/api_client_authorizations/"+tokA.UUID, nil, nil, nil))
	const n = 3
	for range n {
		code, _, body := c.put(t, user, 100)
		require.Equal(t, 200, code, body)
	}
	failedBefore := testutilCounter(c.proxy.metrics.auditFailed)
	require.Eventually(t, func() bool { return testutilCounter(c.proxy.metrics.auditFailed) >= failedBefore+5 },
		10*time.Second, 5*time.Millisecond, "delivery keeps retrying")
	assert.Equal(t, n, c.proxy.SpoolDepth(), "nothing delivered, nothing dropped")
	errs := logLines(t, &logs, "level", "ERROR")
	require.Len(t, errs, 1, "one error line a minute, however many attempts failed")
	assert.Contains(t, errs[0]["msg"], "refuses the audit token")
	assert.Contains(t, errs[0]["msg"], "--audit-token-file")
	assert.NotContains(t, logs.String(), tokA.APIToken[len(tokA.APIToken)-20:], "no token in the log")
	assert.Contains(t, c.metricsText(t), "arvupload_proxy_audit_token_refused 1")
	hc, h := c.health(t)
	assert.Equal(t, http.StatusServiceUnavailable, hc)
	assert.Equal(t, "ERROR", h["health"])
	assert.Contains(t, h["error"], "audit token refused")
	assert.Contains(t, h["error"], "3 audit records spooled")

	// A token without the logs scope (403) is refused too, and said once.
	c.proxy.SetAuditToken(newAuditToken("GET /arvados/v1/users/current").APIToken)
	require.Eventually(t, func() bool { return len(logLines(t, &logs, "level", "ERROR")) == 2 }, 10*time.Second, 5*time.Millisecond)
	failedBefore = testutilCounter(c.proxy.metrics.auditFailed)
	require.Eventually(t, func() bool { return testutilCounter(c.proxy.metrics.auditFailed) >= failedBefore+5 }, 10*time.Second, 5*time.Millisecond)
	assert.Len(t, logLines(t, &logs, "level", "ERROR"), 2)
	assert.Equal(t, n, c.proxy.SpoolDepth())

	// A valid token: everything is delivered, once.
	c.proxy.SetAuditToken(newAuditToken("POST /arvados/v1/logs").APIToken)
	require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 10*time.Second, 5*time.Millisecond)
	hc, h = c.health(t)
	assert.Equal(t, http.StatusOK, hc)
	assert.Equal(t, "OK", h["health"])
	assert.Contains(t, c.metricsText(t), "arvupload_proxy_audit_token_refused 0")

	var got arvados.List[arvados.Log]
	require.NoError(t, root.Call(ctx, http.MethodGet, "arvados/v1/logs", url.Values{
		"filters": {`[["event_type","=","block_put"]]`},
	}, nil, &got))
	require.Len(t, got.Items, n+1)
	seen := map[any]int{}
	for _, l := range got.Items {
		assert.Equal(t, auditor.UUID, l.OwnerUUID, "posted by the audit user")
		seen[l.Properties["record_id"]]++
	}
	assert.Len(t, seen, n+1, "every record delivered exactly once")
}

// The refusal log line is rate-limited by its clock: once per interval.
func TestAuditRefusal_logInterval(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	now := time.Unix(1000, 0)
	e.srv.refusal.now = func() time.Time { return now }
	refused := &keepclient.APIError{Method: "POST", URL: "https://api/arvados/v1/logs", Status: 401}
	for range 10 {
		e.srv.auditRefused(refused)
		now = now.Add(5 * time.Second) // 50s in all
	}
	assert.Len(t, logLines(t, &logs, "level", "ERROR"), 1)
	now = now.Add(10 * time.Second)
	e.srv.auditRefused(refused)
	assert.Len(t, logLines(t, &logs, "level", "ERROR"), 2, "a minute after the last line")
	e.srv.auditAccepted()
	assert.Empty(t, e.srv.auditRefusedHealth())
}
