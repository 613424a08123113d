package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/apiserver"
	"github.com/arv-upload/arv-upload/keepclient"
	"github.com/arv-upload/arv-upload/keepstore"
)

// TestProxy_withAPIServer runs the proxy against our real API server and
// real keepstores: token check, deactivation, signatures and audit logs.
func TestProxy_withAPIServer(t *testing.T) {
	ctx := context.Background()
	var disks []keepclient.KeepService
	api, err := apiserver.Open(apiserver.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { api.Close() })
	for i := range 2 {
		ks, err := keepstore.New(keepstore.Options{Dir: t.TempDir(), SigningKey: api.SigningKey()})
		require.NoError(t, err)
		ts := httptest.NewServer(ks)
		t.Cleanup(ts.Close)
		u, _ := url.Parse(ts.URL)
		svc := keepclient.ServicesFromEnv(ts.URL)[0]
		svc.UUID = "zzzzz-bi6l4-00000000000000" + string(rune('0'+i))
		svc.ServiceType = "disk"
		_ = u
		disks = append(disks, svc)
	}
	require.NoError(t, api.SetKeepServices(disks, nil))
	apiTS := httptest.NewServer(api)
	t.Cleanup(apiTS.Close)
	host := strings.TrimPrefix(apiTS.URL, "http://")
	svcClient, err := keepclient.NewClient(keepclient.Config{APIHost: host, Scheme: "http", Token: api.SystemRootToken(), MaxElapsed: time.Second})
	require.NoError(t, err)
	user, token, err := api.CreateUser(ctx, keepclient.User{Email: "up@example.com", Username: "uploader", IsActive: true})
	require.NoError(t, err)

	px, err := New(Options{
		API:          svcClient,
		Keep:         keepclient.NewKeep(svcClient, keepclient.KeepOptions{Services: disks, HTTPClient: &http.Client{Transport: ViaTransport(nil)}, RetryDelay: 10 * time.Millisecond}),
		AuthCacheTTL: 300 * time.Millisecond, SpoolDir: t.TempDir(),
		AuditMinBackoff: 5 * time.Millisecond, AuditMaxBackoff: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, px.Start(ctx))
	pts := httptest.NewServer(px)
	t.Cleanup(func() { pts.Close(); px.Close() })

	put := func(tok string, data []byte) (int, http.Header, string) {
		return proxyPut(t, pts.URL, "/"+keepclient.HashOf(data), data, map[string]string{"Authorization": "OAuth2 " + tok})
	}
	data := randomBlock(77, 12345)
	code, h, loc := put(token, data)
	require.Equal(t, 200, code, loc)
	assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"), "discovery's defaultCollectionReplication")
	require.NoError(t, keepclient.VerifySignature(loc, token, keepclient.DefaultBlobSigningTTL, api.SigningKey(), time.Now()))

	code, _, _ = put("v2/zzzzz-gj3su-000000000000000/nosuchsecret", data)
	assert.Equal(t, 403, code)

	// The block_put log arrives with the user's uuid.
	require.Eventually(t, func() bool { return px.SpoolDepth() == 0 }, 10*time.Second, 10*time.Millisecond)
	var logs keepclient.List[keepclient.Log]
	require.NoError(t, svcClient.Call(ctx, http.MethodGet, "arvados/v1/logs", url.Values{
		"filters": {`[["event_type","=","block_put"]]`},
	}, nil, &logs))
	require.Len(t, logs.Items, 1)
	assert.Equal(t, keepclient.LocatorFor(data), logs.Items[0].ObjectUUID)
	assert.Equal(t, user.UUID, logs.Items[0].Properties["user_uuid"])

	// Deactivate: accepted until the cache TTL runs out, then refused.
	admin := svcClient.WithToken(api.AdminToken())
	require.NoError(t, admin.Call(ctx, http.MethodPut, "arvados/v1/users/"+user.UUID, nil,
		map[string]any{"user": map[string]any{"is_active": false}}, nil))
	require.Eventually(t, func() bool {
		code, _, _ := put(token, data)
		return code == 403
	}, 10*time.Second, 20*time.Millisecond)
}
