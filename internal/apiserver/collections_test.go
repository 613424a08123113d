package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
)

// A create or update with a manifest stores what the plain path (parse the
// whole manifest, strip the signatures, hash the portable text) says, on
// manifests with escaped names, \040, empty files, several blocks per
// stream, a file spanning blocks and a path listed twice; the answer
// carries the manifest re-signed when select asks for it.
func TestServer_collectionManifestAsThePlainPath(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour)
	sign := func(l string) string {
		return arvados.SignLocator(l, tok, exp, arvados.DefaultBlobSigningTTL, s.SigningKey())
	}
	foo, bar := sign("acbd18db4cc2f85cedef654fccc4a4d8+3"), sign("37b51d194a7513e45b56f6524f2d51f2+3")
	big := sign("204e43b8a1185621ca55a94839582e6f+67108864+Kzzzzz")
	manifests := []string{
		". " + foo + " 0:3:my\\040file\\072v1.txt 0:0:empty 0:0:\\134back\n",
		"./a\\040dir " + foo + " " + bar + " 0:6:ab 2:2:mid 0:3:f\n./a\\040dir " + bar + " 0:3:f\n",
		". " + big + " " + foo + " 67108862:5:spans\n./x/y " + foo + " 0:3:caf\\303\\251\n",
		"./a " + foo + " 0:3:b\n. " + foo + " 0:3:a/b\n./d d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n",
		". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n",
		bigManifest(3, 5, 4096, sign),
	}
	sel := url.Values{"select": {`["uuid","portable_data_hash","file_count","file_size_total","manifest_text"]`}}
	for i, text := range manifests {
		stripped := arvados.StripSignatures(text)
		m, err := arvados.ParseManifest(stripped)
		require.NoError(t, err)
		var size int64
		for _, f := range m.Files {
			size += f.Size()
		}
		check := func(what string, got map[string]any) {
			t.Helper()
			assert.Equal(t, arvados.PortableDataHash(stripped), got["portable_data_hash"], "%s %d", what, i)
			assert.EqualValues(t, len(m.Files), got["file_count"], "%s %d", what, i)
			assert.EqualValues(t, size, got["file_size_total"], "%s %d", what, i)
			signed, _ := got["manifest_text"].(string)
			assert.Equal(t, stripped, arvados.StripSignatures(signed), "%s %d: the manifest as stored", what, i)
			assert.Regexp(t, `\+A[0-9a-f]{40}@`, signed, "%s %d: signed for the reader", what, i)
		}
		var created map[string]any
		body := map[string]any{"collection": map[string]any{"name": "c" + strings.Repeat("x", i), "manifest_text": text}}
		require.NoError(t, client(t, ts, tok).Call(ctx, http.MethodPost, "arvados/v1/collections", sel, body, &created))
		check("create", created)
		slot := mk(t, ts, tok, "collections", map[string]any{"name": "slot " + created["uuid"].(string)})
		var updated map[string]any
		require.NoError(t, client(t, ts, tok).Call(ctx, http.MethodPut, "arvados/v1/collections/"+slot["uuid"].(string), sel,
			map[string]any{"collection": map[string]any{"manifest_text": text}}, &updated))
		check("update", updated)
		stored, err := client(t, ts, tok).GetCollection(ctx, created["uuid"].(string))
		require.NoError(t, err)
		assert.Equal(t, stripped, arvados.StripSignatures(stored.ManifestText))
	}
	// A manifest_text that is not a string is refused as before.
	r := send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"manifest_text": 5}})
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, r.raw)
}

// Names are unique per owner among untrashed current collections, whatever
// characters they hold; the same text elsewhere (a property, a manifest, a
// past version, another owner) is no clash.
func TestServer_collectionNameUnique(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, ts := open(t, dir)
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	_, other, err := s.CreateUser(ctx, arvados.User{FullName: "O", IsActive: true})
	require.NoError(t, err)
	create := func(tok string, attrs map[string]any) reply {
		return send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": attrs})
	}
	for _, name := range []string{"plain", `a "quoted" <b> & c`, "caf\u00e9 \u2028 line", `back\slash`, "x\":\"y"} {
		require.Equal(t, http.StatusOK, create(tok, map[string]any{"name": name}).status, name)
		r := create(tok, map[string]any{"name": name})
		assert.Equal(t, http.StatusUnprocessableEntity, r.status, "%q taken: %s", name, r.raw)
		assert.Equal(t, http.StatusOK, create(other, map[string]any{"name": name}).status, "another owner: %q", name)
		r = send(t, ts, tok, "POST", "/arvados/v1/collections?ensure_unique_name=true", map[string]any{"collection": map[string]any{"name": name}})
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.NotEqual(t, name, r.body["name"])
	}
	// The name's text in a property or a manifest file name is no clash.
	require.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "holder", "properties": map[string]any{"name": "in props"},
		"manifest_text": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:in\\040manifest 0:0:\\042name\\042:\\042in\\040manifest\\042\n"}).status)
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "in props"}).status)
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "in manifest"}).status)
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": `"name":"in manifest"`}).status)

	// A renamed collection frees its old name and takes the new one; its
	// past version (kept by the update) holds the old name but no clash.
	c := create(tok, map[string]any{"name": "before", "preserve_version": true})
	require.Equal(t, http.StatusOK, c.status, c.raw)
	r := send(t, ts, tok, "PUT", "/arvados/v1/collections/"+c.body["uuid"].(string), map[string]any{"collection": map[string]any{"name": "after"}})
	require.Equal(t, http.StatusOK, r.status, r.raw)
	assert.EqualValues(t, 2, r.body["version"], "a past version was kept")
	assert.Equal(t, http.StatusUnprocessableEntity, create(tok, map[string]any{"name": "after"}).status)
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "before"}).status)
	// Renaming to its own name is no clash; to a taken one is.
	r = send(t, ts, tok, "PUT", "/arvados/v1/collections/"+c.body["uuid"].(string), map[string]any{"collection": map[string]any{"name": "after"}})
	assert.Equal(t, http.StatusOK, r.status, r.raw)
	r = send(t, ts, tok, "PUT", "/arvados/v1/collections/"+c.body["uuid"].(string), map[string]any{"collection": map[string]any{"name": "plain"}})
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, r.raw)
	// A trashed collection's name is free.
	r = send(t, ts, tok, "DELETE", "/arvados/v1/collections/"+c.body["uuid"].(string), nil)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "after"}).status)
	assert.Equal(t, http.StatusUnprocessableEntity, create(tok, map[string]any{"name": "after"}).status)

	// After a restart the names are known as before.
	ts.Close()
	require.NoError(t, s.Close())
	_, ts = open(t, dir)
	for _, name := range []string{"plain", `a "quoted" <b> & c`, "after", "in props"} {
		assert.Equal(t, http.StatusUnprocessableEntity, create(tok, map[string]any{"name": name}).status, "after a restart: %q", name)
	}
	assert.Equal(t, http.StatusOK, create(tok, map[string]any{"name": "before 2"}).status)
	assert.Equal(t, http.StatusOK, create(other, map[string]any{"name": "after"}).status, "another owner")
}

// Every locator of a manifest is checked, wherever it is: one unsigned (or
// badly signed) locator anywhere refuses the whole manifest, naming it.
func TestServer_collectionEverySignatureChecked(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour)
	sign := func(l string) string {
		return arvados.SignLocator(l, tok, exp, arvados.DefaultBlobSigningTTL, s.SigningKey())
	}
	good := bigManifest(4, 50, 4096, sign)
	r := send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"manifest_text": good}})
	require.Equal(t, http.StatusOK, r.status, r.raw)
	slot := mk(t, ts, tok, "collections", map[string]any{})["uuid"].(string)
	bad := "fedcba9876543210fedcba9876543210+4096"
	forged := arvados.SignLocator(bad, tok, exp, arvados.DefaultBlobSigningTTL, []byte("forged"))
	for name, m := range map[string]string{
		"last line, last locator": good + "./z " + sign("acbd18db4cc2f85cedef654fccc4a4d8+3") + " " + bad + " 0:5:z\n",
		"first locator":           "./z " + bad + " " + sign("acbd18db4cc2f85cedef654fccc4a4d8+3") + " 0:5:z\n" + good,
		"forged, middle line":     good[:strings.Index(good, "\n")+1] + "./y " + forged + " 0:5:y\n" + good[strings.Index(good, "\n")+1:],
		"after a double space":    "./z " + sign("acbd18db4cc2f85cedef654fccc4a4d8+3") + "  " + bad + " 0:5:z\n",
		"after a file token":      "./z " + sign("acbd18db4cc2f85cedef654fccc4a4d8+3") + " 0:3:z " + bad + "\n",
		"expired":                 "./z " + arvados.SignLocator(bad, tok, time.Now().Add(-time.Second), arvados.DefaultBlobSigningTTL, s.SigningKey()) + " 0:5:z\n",
	} {
		for _, req := range []struct{ method, path string }{
			{"POST", "/arvados/v1/collections"}, {"PUT", "/arvados/v1/collections/" + slot},
		} {
			r := send(t, ts, tok, req.method, req.path, map[string]any{"collection": map[string]any{"manifest_text": m}})
			assert.Equal(t, http.StatusForbidden, r.status, "%s %s: %s", name, req.method, r.raw)
			assert.Contains(t, r.raw, "fedcba9876543210fedcba9876543210+4096", name)
		}
	}
	// The empty block needs no signature.
	r = send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{
		"manifest_text": good + "./e d41d8cd98f00b204e9800998ecf8427e+0 0:0:e\n"}})
	assert.Equal(t, http.StatusOK, r.status, r.raw)
}

// versionChanged says what comparing the JSON of the versioned attributes
// said.
func TestVersionChanged_asJSON(t *testing.T) {
	byJSON := func(a, b arvados.Collection) bool {
		aj, _ := json.Marshal([]any{a.Name, a.Description, a.Properties, a.ManifestText, a.OwnerUUID, a.IsTrashed})
		bj, _ := json.Marshal([]any{b.Name, b.Description, b.Properties, b.ManifestText, b.OwnerUUID, b.IsTrashed})
		return string(aj) != string(bj)
	}
	base := arvados.Collection{Name: "n", Description: "d", ManifestText: ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:x\n",
		Properties: map[string]any{"a": 1.0, "b": []any{"x"}}}
	base.OwnerUUID = "zzzzz-tpzed-000000000000000"
	for name, change := range map[string]func(c *arvados.Collection){
		"nothing":              func(c *arvados.Collection) {},
		"name":                 func(c *arvados.Collection) { c.Name = "m" },
		"description":          func(c *arvados.Collection) { c.Description = "" },
		"manifest":             func(c *arvados.Collection) { c.ManifestText = "" },
		"owner":                func(c *arvados.Collection) { c.OwnerUUID = "zzzzz-j7d0g-000000000000000" },
		"trashed":              func(c *arvados.Collection) { c.IsTrashed = true },
		"property value":       func(c *arvados.Collection) { c.Properties = map[string]any{"a": 2.0, "b": []any{"x"}} },
		"same properties":      func(c *arvados.Collection) { c.Properties = map[string]any{"b": []any{"x"}, "a": 1.0} },
		"nil properties":       func(c *arvados.Collection) { c.Properties = nil },
		"empty properties":     func(c *arvados.Collection) { c.Properties = map[string]any{} },
		"modified_at only":     func(c *arvados.Collection) { now := time.Now(); c.ModifiedAt = &now },
		"file count (derived)": func(c *arvados.Collection) { c.FileCount = 7 },
	} {
		after := base
		change(&after)
		assert.Equal(t, byJSON(base, after), versionChanged(base, after), name)
	}
}
