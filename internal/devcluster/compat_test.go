package devcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// These tests replay, byte for byte where it matters, the requests real
// Arvados clients make (PROTOCOL 6.1, 7.2, 9.1, 11.3) against our servers.

type rawClient struct {
	t     *testing.T
	http  *http.Client
	base  string
	token string
}

func newRawClient(t *testing.T, c *Cluster, token string) *rawClient {
	return &rawClient{
		t:     t,
		http:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
		base:  c.Scheme + "://" + c.APIHost,
		token: token,
	}
}

func (rc *rawClient) do(req *http.Request) (int, []byte, http.Header) {
	rc.t.Helper()
	if rc.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+rc.token)
	}
	resp, err := rc.http.Do(req)
	require.NoError(rc.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(rc.t, err)
	return resp.StatusCode, body, resp.Header
}

func (rc *rawClient) get(path string, hdr map[string]string) (int, []byte) {
	req, _ := http.NewRequest(http.MethodGet, rc.base+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	code, body, _ := rc.do(req)
	return code, body
}

func startCluster(t *testing.T, proxy bool) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), Options{Dir: t.TempDir(), TLS: true, Proxy: proxy})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// arv-put: discovery, config, users/current, keep_services/accessible,
// PUT with Expect: 100-continue, then POST collections with the attributes
// at the top level of a JSON body and ensure_unique_name in the query.
func TestCompat_arvPut(t *testing.T) {
	c := startCluster(t, false)
	rc := newRawClient(t, c, c.UserToken)

	code, body := rc.get("/discovery/v1/apis/arvados/v1/rest", nil)
	require.Equal(t, 200, code, string(body))
	var disc map[string]any
	require.NoError(t, json.Unmarshal(body, &disc))
	assert.Equal(t, "zzzzz", disc["uuidPrefix"])
	assert.EqualValues(t, 1209600, disc["blobSignatureTtl"])
	assert.EqualValues(t, 2, disc["defaultCollectionReplication"])
	assert.NotNil(t, disc["maxRequestSize"])

	code, body = rc.get("/arvados/v1/config", nil)
	require.Equal(t, 200, code, string(body))
	var conf arvados.ClusterConfig
	require.NoError(t, json.Unmarshal(body, &conf))
	assert.Equal(t, "zzzzz", conf.ClusterID)
	assert.Equal(t, []string{"default"}, conf.DefaultStorageClasses())

	code, body = rc.get("/arvados/v1/users/current", nil)
	require.Equal(t, 200, code, string(body))
	var me arvados.User
	require.NoError(t, json.Unmarshal(body, &me))
	assert.True(t, me.IsActive)
	assert.False(t, me.IsAdmin)

	code, body = rc.get("/arvados/v1/keep_services/accessible", nil)
	require.Equal(t, 200, code, string(body))
	var svcs arvados.List[arvados.KeepService]
	require.NoError(t, json.Unmarshal(body, &svcs))
	require.Len(t, svcs.Items, 2)
	assert.Equal(t, "disk", svcs.Items[0].ServiceType)

	// Keep PUT the way the Python SDK sends it.
	data := []byte("hello alice\nhello bob\nhello carol\nhello dave\n")
	hash := arvados.HashOf(data)
	var signed []string
	for _, s := range keepclient.ProbeOrder(hash, svcs.Items)[:2] {
		req, _ := http.NewRequest(http.MethodPut, s.URL()+"/"+hash, bytes.NewReader(data))
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("X-Keep-Desired-Replicas", "2")
		req.Header.Set("X-Keep-Storage-Classes", "default")
		req.Header.Set("Content-Type", "application/octet-stream")
		code, body, hdr := rc.do(req)
		require.Equal(t, 200, code, string(body))
		assert.True(t, strings.HasSuffix(string(body), "\n"), "keepstore ends the locator with a newline")
		assert.Equal(t, "1", hdr.Get("X-Keep-Replicas-Stored"))
		signed = append(signed, strings.TrimSpace(string(body)))
	}
	loc := signed[0]
	require.Regexp(t, `^90a42f3c1b83b30a417ef011f08237da\+45\+A[0-9a-f]{40}@[0-9a-f]{8}$`, loc)

	manifest := "./tmp " + loc + " 0:12:alice.txt 12:10:bob.txt 22:12:carol.txt\n./tmp/sub " + loc + " 34:11:dave.txt\n"
	attrs, _ := json.Marshal(map[string]any{
		"manifest_text": manifest, "name": "Saved at 2026-11-24 12:00:00 UTC by x@y",
		"replication_desired": nil, "owner_uuid": me.UUID,
	})
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest(http.MethodPost, rc.base+"/arvados/v1/collections?ensure_unique_name=true", bytes.NewReader(attrs))
		req.Header.Set("Content-Type", "application/json")
		code, body, _ := rc.do(req)
		require.Equal(t, 200, code, string(body))
		var coll arvados.Collection
		require.NoError(t, json.Unmarshal(body, &coll))
		assert.Equal(t, "d028eb277e4c3c9a6e382af3c9bbe250+148", coll.PortableDataHash, "example G")
		if i == 1 {
			assert.Equal(t, "Saved at 2026-11-24 12:00:00 UTC by x@y ("+coll.UUID[12:]+")", coll.Name, "ensure_unique_name suffix")
		}
		m, err := arvados.ParseManifest(coll.ManifestText)
		require.NoError(t, err)
		assert.NoError(t, arvados.VerifySignature(m.Files[0].Segments[0].Locator, c.UserToken, arvados.DefaultBlobSigningTTL, c.API.SigningKey(), time.Now()), "re-signed for the caller")
	}
}

// The Go SDK sends create/update attributes as a form field holding JSON,
// then reads the collection and fetches blocks with the signed locators.
func TestCompat_goSDK(t *testing.T) {
	c := startCluster(t, false)
	rc := newRawClient(t, c, c.UserToken)
	keep := keepclient.NewKeep(c.Client(c.UserToken), keepclient.KeepOptions{})
	res, err := keep.Put(context.Background(), []byte("foo"), keepclient.PutOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, res.Replicas)

	form := url.Values{"collection": {fmt.Sprintf(`{"name":"sdk","manifest_text":". %s 0:3:foo\n"}`, res.Locator)}}
	req, _ := http.NewRequest(http.MethodPost, rc.base+"/arvados/v1/collections", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, body, _ := rc.do(req)
	require.Equal(t, 200, code, string(body))
	var coll arvados.Collection
	require.NoError(t, json.Unmarshal(body, &coll))
	assert.Equal(t, "1f4b0bc7583c2a7f9102c395f4ffc5e3+45", coll.PortableDataHash)

	got, err := c.Client(c.UserToken).GetCollection(context.Background(), coll.UUID)
	require.NoError(t, err)
	m, err := arvados.ParseManifest(got.ManifestText)
	require.NoError(t, err)
	require.Len(t, m.Files, 1)
	data, err := keep.Get(context.Background(), m.Files[0].Segments[0].Locator)
	require.NoError(t, err)
	assert.Equal(t, "foo", string(data))

	// The same locator signed for another token is refused by the API.
	form = url.Values{"collection": {fmt.Sprintf(`{"manifest_text":". %s 0:3:foo\n"}`, res.Locator)}}
	req, _ = http.NewRequest(http.MethodPost, rc.base+"/arvados/v1/collections", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// v1 spelling of the same token: the signature covers the full string.
	secret := c.UserToken[strings.LastIndexByte(c.UserToken, '/')+1:]
	req.Header.Set("Authorization", "Bearer "+secret)
	code, body, _ = rc.do(req)
	assert.Equal(t, 403, code, string(body))
}

// keepproxy (and our proxy) check tokens with users/current, and external
// clients are sent to the proxy by keep_services/accessible.
func TestCompat_keepproxyAndAccessible(t *testing.T) {
	c := startCluster(t, true)
	rc := newRawClient(t, c, c.UserToken)
	code, body := rc.get("/arvados/v1/keep_services/accessible", map[string]string{"X-External-Client": "1"})
	require.Equal(t, 200, code, string(body))
	var svcs arvados.List[arvados.KeepService]
	require.NoError(t, json.Unmarshal(body, &svcs))
	require.Len(t, svcs.Items, 1)
	assert.Equal(t, "proxy", svcs.Items[0].ServiceType)
	assert.Equal(t, c.ProxyURL, svcs.Items[0].URL())

	// Without the header a client is still given the proxy, because the
	// keepstores are internal (see docs/API.md).
	code, body = rc.get("/arvados/v1/keep_services/accessible", nil)
	require.Equal(t, 200, code, string(body))
	require.NoError(t, json.Unmarshal(body, &svcs))
	require.Len(t, svcs.Items, 1)
	assert.Equal(t, "proxy", svcs.Items[0].ServiceType)

	// A client writes through the proxy with replication 2.
	keep := keepclient.NewKeep(c.Client(c.UserToken), keepclient.KeepOptions{})
	res, err := keep.Put(context.Background(), []byte("through the proxy"), keepclient.PutOptions{Replicas: 2})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Replicas)
	require.NoError(t, arvados.VerifySignature(res.Locator, c.UserToken, arvados.DefaultBlobSigningTTL, c.API.SigningKey(), time.Now()))

	// A bad token is refused by the proxy.
	bad := keepclient.NewKeep(c.Client("v2/zzzzz-gj3su-000000000000009/nope"), keepclient.KeepOptions{Services: svcs.Items})
	_, err = bad.Put(context.Background(), []byte("nope"), keepclient.PutOptions{Replicas: 1})
	assert.ErrorContains(t, err, "[403]")
}
