package apiserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

func TestScopeAllows(t *testing.T) {
	for _, tc := range []struct {
		scopes       []string
		method, path string
		ok           bool
	}{
		{[]string{"all"}, "POST", "/arvados/v1/anything", true},
		{[]string{"GET /arvados/v1/users/current"}, "GET", "/arvados/v1/users/current", true},
		{[]string{"GET /arvados/v1/users/current"}, "HEAD", "/arvados/v1/users/current", true},
		{[]string{"GET /arvados/v1/users/current"}, "GET", "/arvados/v1/users", false},
		{[]string{"GET /arvados/v1/collections/"}, "GET", "/arvados/v1/collections/zzzzz-4zz18-000000000000000", true},
		{[]string{"GET /arvados/v1/collections/"}, "GET", "/arvados/v1/collections/", false}, // trailing slash stripped
		{[]string{"GET /arvados/v1/collections"}, "GET", "/arvados/v1/collections/", true},
		{[]string{"PATCH /arvados/v1/collections/"}, "PUT", "/arvados/v1/collections/zzzzz-4zz18-000000000000000", true},
		{[]string{}, "GET", "/arvados/v1/users/current", false},
		{[]string{"POST /arvados/v1/links"}, "POST", "/arvados/v1/links", true},
	} {
		assert.Equal(t, tc.ok, scopeAllows(tc.scopes, tc.method, tc.path), "%v %s %s", tc.scopes, tc.method, tc.path)
	}
}

func open(t *testing.T, dir string) (*Server, *httptest.Server) {
	s, err := Open(Options{DataDir: dir})
	require.NoError(t, err)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

func client(t *testing.T, ts *httptest.Server, tok string) *keepclient.Client {
	c, err := keepclient.NewClient(keepclient.Config{APIHost: strings.TrimPrefix(ts.URL, "http://"), Scheme: "http", Token: tok, MaxElapsed: time.Second})
	require.NoError(t, err)
	return c
}

func TestServer_tokensSignaturesAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, ts := open(t, dir)
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	u := client(t, ts, tok)
	me, err := u.CurrentUser(ctx)
	require.NoError(t, err)
	// v1 spelling of the same token authenticates too.
	secret := tok[strings.LastIndexByte(tok, '/')+1:]
	_, err = client(t, ts, secret).CurrentUser(ctx)
	require.NoError(t, err)
	_, err = client(t, ts, "v2/zzzzz-gj3su-000000000000077/nope").CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, 401), "%v", err)

	exp := time.Now().Add(time.Hour)
	signed := arvados.SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3", tok, exp, arvados.DefaultBlobSigningTTL, s.SigningKey())
	coll, err := u.CreateCollection(ctx, map[string]any{"name": "c", "manifest_text": ". " + signed + " 0:3:foo\n"}, false)
	require.NoError(t, err)
	assert.Equal(t, "1f4b0bc7583c2a7f9102c395f4ffc5e3+45", coll.PortableDataHash)
	assert.Equal(t, me.UUID, coll.OwnerUUID)
	assert.Equal(t, int64(1), coll.FileCount)
	assert.Equal(t, int64(3), coll.FileSizeTotal)

	for name, loc := range map[string]string{
		"unsigned":    "acbd18db4cc2f85cedef654fccc4a4d8+3",
		"v1 spelling": arvados.SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3", secret, exp, arvados.DefaultBlobSigningTTL, s.SigningKey()),
		"wrong key":   arvados.SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3", tok, exp, arvados.DefaultBlobSigningTTL, []byte("forged")),
		"expired":     arvados.SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3", tok, time.Now().Add(-time.Minute), arvados.DefaultBlobSigningTTL, s.SigningKey()),
	} {
		_, err := u.CreateCollection(ctx, map[string]any{"manifest_text": ". " + loc + " 0:3:foo\n"}, false)
		assert.True(t, keepclient.IsStatus(err, 403), "%s: %v", name, err)
	}
	_, err = u.CreateCollection(ctx, map[string]any{"manifest_text": ". " + signed + "  0:3:foo\n"}, false)
	assert.True(t, keepclient.IsStatus(err, 422), "bad manifest: %v", err)
	_, err = u.CreateCollection(ctx, map[string]any{"name": "c", "bogus": 1}, false)
	assert.True(t, keepclient.IsStatus(err, 422), "unknown attribute: %v", err)
	_, err = u.CreateCollection(ctx, map[string]any{"name": "c"}, false)
	assert.True(t, keepclient.IsStatus(err, 422), "duplicate name: %v", err)

	// Malformed JSON and oversized bodies change nothing.
	resp, err := http.Post(ts.URL+"/arvados/v1/collections?api_token="+tok, "application/json", strings.NewReader("{nope"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, string(body), `"errors"`)
	list, err := u.ListCollections(ctx, keepclient.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	// Restart on the same data directory keeps everything.
	ts.Close()
	require.NoError(t, s.Close())
	s2, ts2 := open(t, dir)
	assert.Equal(t, s.SigningKey(), s2.SigningKey())
	got, err := client(t, ts2, tok).GetCollection(ctx, coll.UUID)
	require.NoError(t, err)
	m, err := arvados.ParseManifest(got.ManifestText)
	require.NoError(t, err)
	assert.NoError(t, arvados.VerifySignature(m.Files[0].Segments[0].Locator, tok, arvados.DefaultBlobSigningTTL, s2.SigningKey(), time.Now()))
	byPDH, err := client(t, ts2, tok).GetCollection(ctx, coll.PortableDataHash)
	require.NoError(t, err)
	assert.Equal(t, coll.PortableDataHash, byPDH.PortableDataHash)
}

// A deleted (trashed) collection is a 404 to get and update, as upstream;
// get finds it with include_trash=true, and deleting it again is fine.
func TestServer_trashedCollection(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	u := client(t, ts, tok)
	c, err := u.CreateCollection(ctx, map[string]any{"name": "partial"}, false)
	require.NoError(t, err)
	path := "arvados/v1/collections/" + c.UUID
	require.NoError(t, u.Call(ctx, http.MethodDelete, path, nil, nil, nil))
	_, err = u.GetCollection(ctx, c.UUID)
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "get: %v", err)
	_, err = u.UpdateCollection(ctx, c.UUID, map[string]any{"name": "x"})
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "update: %v", err)
	var got arvados.Collection
	require.NoError(t, u.Call(ctx, http.MethodGet, path, url.Values{"include_trash": {"true"}}, nil, &got))
	assert.True(t, got.IsTrashed)
	assert.NoError(t, u.Call(ctx, http.MethodDelete, path, nil, nil, nil))
	// The name is free again.
	_, err = u.CreateCollection(ctx, map[string]any{"name": "partial"}, false)
	assert.NoError(t, err)
}

// select on create, update and get answers only those attributes, so a
// client can keep a big manifest out of the response.
func TestServer_selectOnCreateUpdateGet(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	u := client(t, ts, tok)
	sel := url.Values{"select": {`["uuid","portable_data_hash"]`}}
	var created map[string]any
	body := map[string]any{"collection": map[string]any{"name": "sel", "manifest_text": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"}}
	require.NoError(t, u.Call(ctx, http.MethodPost, "arvados/v1/collections", sel, body, &created))
	assert.NotContains(t, created, "manifest_text")
	assert.NotContains(t, created, "name")
	assert.Equal(t, arvados.PortableDataHash(". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"), created["portable_data_hash"])
	uuid, _ := created["uuid"].(string)
	require.NotEmpty(t, uuid)
	var updated map[string]any
	require.NoError(t, u.Call(ctx, http.MethodPatch, "arvados/v1/collections/"+uuid, sel, map[string]any{"collection": map[string]any{"name": "sel2"}}, &updated))
	assert.Equal(t, uuid, updated["uuid"])
	assert.NotContains(t, updated, "manifest_text")
	full, err := u.GetCollection(ctx, uuid)
	require.NoError(t, err)
	assert.Equal(t, "sel2", full.Name, "without select, everything")
	assert.NotEmpty(t, full.ManifestText)
}

// Get by PDH matches hash and size exactly, hints stripped, as upstream
// (hash+size == portable_data_hash): the same hash with another size, or a
// bare hash, is a 404, never another collection's manifest.
func TestServer_getByPDHMatchesSize(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	u := client(t, ts, tok)
	c, err := u.CreateCollection(ctx, map[string]any{"name": "c", "manifest_text": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"}, false)
	require.NoError(t, err)
	pdh := c.PortableDataHash
	hash, size, _ := strings.Cut(pdh, "+")

	got, err := u.GetCollection(ctx, pdh+"+Kzzzzz")
	require.NoError(t, err, "hints are stripped")
	assert.Equal(t, pdh, got.PortableDataHash)
	for _, id := range []string{hash + "+" + size + "0", hash + "+1", hash} {
		_, err := u.GetCollection(ctx, id)
		assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "%s: %v", id, err)
	}
}
