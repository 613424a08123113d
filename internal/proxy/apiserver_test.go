package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/apiserver"
	"github.com/arv-upload/arv-upload/internal/keepstore"
	"github.com/arv-upload/arv-upload/keepclient"
)

// realCluster is our API server, two keepstores and the proxy, each on its
// own loopback HTTP server.
type realCluster struct {
	api     *apiserver.Server
	svc     *keepclient.Client // the proxy's service client (system root token)
	disks   []arvados.KeepService
	proxy   *Server
	proxyTS *httptest.Server
	seed    atomic.Uint64 // distinct blocks per put
}

// newRealCluster starts the cluster; mod may adjust the proxy's options,
// srv its HTTP server (timeouts) before it starts.
func newRealCluster(t testing.TB, mod func(*Options), srv func(*http.Server)) *realCluster {
	t.Helper()
	api, err := apiserver.Open(apiserver.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	return newRealClusterAPI(t, api, mod, srv)
}

// newRealClusterAPI is newRealCluster around an API server the caller
// opened (and that the cluster closes at the test's end).
func newRealClusterAPI(t testing.TB, api *apiserver.Server, mod func(*Options), srv func(*http.Server)) *realCluster {
	t.Helper()
	c := &realCluster{}
	var err error
	t.Cleanup(func() { api.Close() })
	c.api = api
	for i := range 2 {
		ks, err := keepstore.New(keepstore.Options{Dir: t.TempDir(), SigningKey: api.SigningKey(), EnforceSigning: true})
		require.NoError(t, err)
		ts := httptest.NewServer(ks)
		t.Cleanup(ts.Close)
		svc := keepclient.ServicesFromEnv(ts.URL)[0]
		svc.UUID = fmt.Sprintf("zzzzz-bi6l4-%015d", i)
		svc.ServiceType = "disk"
		c.disks = append(c.disks, svc)
	}
	require.NoError(t, api.SetKeepServices(c.disks, nil))
	apiTS := httptest.NewServer(api)
	t.Cleanup(apiTS.Close)
	c.svc, err = keepclient.NewClient(keepclient.Config{APIHost: strings.TrimPrefix(apiTS.URL, "http://"), Scheme: "http", Token: api.SystemRootToken(), MaxElapsed: time.Second})
	require.NoError(t, err)
	opts := Options{
		API:      c.svc,
		Keep:     keepclient.NewKeep(c.svc, keepclient.KeepOptions{Services: c.disks, HTTPClient: &http.Client{Transport: ViaTransport(nil)}, RetryDelay: 10 * time.Millisecond}),
		Services: c.disks, SpoolDir: t.TempDir(), ManagementToken: "mgmt-token",
		AuditMinBackoff: 5 * time.Millisecond, AuditMaxBackoff: 50 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	c.proxy, err = New(opts)
	require.NoError(t, err)
	require.NoError(t, c.proxy.Start(context.Background()))
	c.proxyTS = httptest.NewUnstartedServer(c.proxy)
	if srv != nil {
		srv(c.proxyTS.Config)
	}
	c.proxyTS.Start()
	t.Cleanup(func() { c.proxyTS.Close(); c.proxy.Close() })
	return c
}

// newUser creates an active user and returns it with its v2 token.
func (c *realCluster) newUser(t testing.TB, name string) (arvados.User, string) {
	t.Helper()
	u, tok, err := c.api.CreateUser(context.Background(), arvados.User{Email: name + "@example.com", Username: name, IsActive: true})
	require.NoError(t, err)
	return u, tok
}

// client is an API client for token.
func (c *realCluster) client(token string) *keepclient.Client { return c.svc.WithToken(token) }

// put PUTs a new block of n bytes through the proxy with token.
func (c *realCluster) put(t testing.TB, token string, n int) (int, http.Header, string) {
	t.Helper()
	code, h, body, err := c.tryPut(token, n)
	require.NoError(t, err)
	return code, h, body
}

// tryPut is put for other goroutines than the test's: it returns transport
// errors.
func (c *realCluster) tryPut(token string, n int) (int, http.Header, string, error) {
	data := randomBlock(1000+c.seed.Add(1), n)
	req, err := http.NewRequest(http.MethodPut, c.proxyTS.URL+"/"+arvados.HashOf(data), bytes.NewReader(data))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "OAuth2 "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// TestProxy_withAPIServer runs the proxy against our real API server and
// real keepstores: token check, signatures and audit logs.
func TestProxy_withAPIServer(t *testing.T) {
	ctx := context.Background()
	c := newRealCluster(t, nil, nil)
	user, token := c.newUser(t, "uploader")

	data := randomBlock(77, 12345)
	put := func(tok string) (int, http.Header, string) {
		return proxyPut(t, c.proxyTS.URL, "/"+arvados.HashOf(data), data, map[string]string{"Authorization": "OAuth2 " + tok})
	}
	code, h, loc := put(token)
	require.Equal(t, 200, code, loc)
	assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"), "discovery's defaultCollectionReplication")
	require.NoError(t, arvados.VerifySignature(loc, token, arvados.DefaultBlobSigningTTL, c.api.SigningKey(), time.Now()))

	code, _, _ = put("v2/zzzzz-gj3su-000000000000000/nosuchsecret")
	assert.Equal(t, 403, code)

	// The block_put log arrives with the user's uuid.
	require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 10*time.Second, 10*time.Millisecond)
	var logs arvados.List[arvados.Log]
	require.NoError(t, c.svc.Call(ctx, http.MethodGet, "arvados/v1/logs", url.Values{
		"filters": {`[["event_type","=","block_put"]]`},
	}, nil, &logs))
	require.Len(t, logs.Items, 1)
	assert.Equal(t, arvados.LocatorFor(data), logs.Items[0].ObjectUUID)
	assert.Equal(t, user.UUID, logs.Items[0].Properties["user_uuid"])
}

// TestProxy_withAPIServer_deactivation: a deactivated uploader account is
// refused once the cached answer is older than AuthCacheTTL, not later.
func TestProxy_withAPIServer_deactivation(t *testing.T) {
	const ttl = time.Second
	c := newRealCluster(t, func(o *Options) { o.AuthCacheTTL = ttl }, nil)
	_, ownerToken := c.newUser(t, "owner")
	owner := c.client(ownerToken)
	acct, err := owner.CreateUploaderAccount(context.Background(), "sequencer", nil, "")
	require.NoError(t, err)
	code, _, body := c.put(t, acct.APIToken, 100)
	require.Equal(t, 200, code, body)

	_, err = owner.DeactivateUploaderAccount(context.Background(), acct.UUID)
	require.NoError(t, err)
	start := time.Now()
	for {
		code, _, body = c.put(t, acct.APIToken, 100)
		if code != 200 {
			break
		}
		// Generous margin over the TTL for a loaded machine.
		require.Less(t, time.Since(start), ttl+10*time.Second, "a deactivated account still writes")
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, 403, code, body)
	t.Logf("refused %v after deactivation (AuthCacheTTL %v)", time.Since(start).Round(time.Millisecond), ttl)
}

// TestProxy_withAPIServer_expiry: a token is refused from the moment it, or
// its account, expires, however long the cache would trust it otherwise.
func TestProxy_withAPIServer_expiry(t *testing.T) {
	ctx := context.Background()
	c := newRealCluster(t, func(o *Options) { o.AuthCacheTTL = time.Hour }, nil)
	_, ownerToken := c.newUser(t, "owner")
	owner := c.client(ownerToken)
	// Long enough for the first PUTs on a loaded machine.
	expires := time.Now().Add(4 * time.Second).UTC()

	var expiring arvados.APIClientAuthorization
	require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/api_client_authorizations", nil,
		map[string]any{"api_client_authorization": map[string]any{"scopes": []string{"all"}, "expires_at": expires.Format(time.RFC3339Nano)}}, &expiring))
	acct, err := owner.CreateUploaderAccount(ctx, "run-42", &expires, "")
	require.NoError(t, err)
	// An admin-made token of that account that does not expire itself:
	// only the account's expires_at (users/current) can stop it.
	acct2, err := owner.CreateUploaderAccount(ctx, "run-43", &expires, "")
	require.NoError(t, err)
	var unexpiring arvados.APIClientAuthorization
	require.NoError(t, c.client(c.api.AdminToken()).Call(ctx, http.MethodPost, "arvados/v1/api_client_authorizations", nil,
		map[string]any{"api_client_authorization": map[string]any{"owner_uuid": acct2.UUID}}, &unexpiring))
	require.Nil(t, unexpiring.ExpiresAt)

	tests := []struct {
		name, token string
		after       int // status once expires has passed
	}{
		{"token with expires_at", expiring.TokenV2(), 403},
		{"uploader account with expires_at", acct.APIToken, 403},
		{"account expires, its token does not", unexpiring.TokenV2(), 403},
		{"control: token that never expires", ownerToken, 200},
	}
	for _, tt := range tests {
		code, _, body := c.put(t, tt.token, 100)
		require.Equal(t, 200, code, "%s: %s", tt.name, body)
	}
	require.Less(t, time.Now(), expires, "the machine is too slow for this test's margin")
	time.Sleep(time.Until(expires) + 50*time.Millisecond)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := c.put(t, tt.token, 100)
			assert.Equal(t, tt.after, code, body)
		})
	}
}

// Issue 11.3: a write-only proxy (no EnableReads) answers HEAD of a
// locator signed for the caller's token, as arv-put's resume check needs,
// and nothing more: GET stays 405, an unsigned locator or a bad token 403,
// a signature made for another token is refused by the keepstores.
func TestProxy_withAPIServer_headSignedLocator(t *testing.T) {
	ctx := context.Background()
	c := newRealCluster(t, nil, nil)
	_, tok, err := c.api.CreateUser(ctx, arvados.User{FullName: "A", IsActive: true})
	require.NoError(t, err)
	_, other, err := c.api.CreateUser(ctx, arvados.User{FullName: "B", IsActive: true})
	require.NoError(t, err)
	data := []byte("head me")
	hash := arvados.HashOf(data)
	code, _, signed := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"Authorization": "Bearer " + tok})
	require.Equal(t, http.StatusOK, code, signed)

	head := func(path, token string) int {
		req, err := http.NewRequest(http.MethodHead, c.proxyTS.URL+"/"+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, head(signed, tok), "signed for the caller")
	assert.Equal(t, http.StatusForbidden, head(hash+"+7", tok), "unsigned")
	assert.Equal(t, http.StatusForbidden, head(signed, "v2/zzzzz-gj3su-000000000000000/nope"), "bad token")
	assert.Equal(t, http.StatusForbidden, head(signed, ""), "no token")
	code = head(signed, other)
	assert.True(t, code >= 400 && code < 500, "signed for another token: the keepstores refuse it (%d)", code)
	req, err := http.NewRequest(http.MethodGet, c.proxyTS.URL+"/"+signed, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "GET stays off")
}
