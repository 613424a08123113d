package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// discoveryOf fetches and decodes the discovery document.
func discoveryOf(t *testing.T, tsURL string) map[string]any {
	t.Helper()
	resp, err := http.Get(tsURL + discoveryPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var doc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	return doc
}

// The document has what google-api-python-client (the Python SDK, the arv
// CLI) needs to build a client: PROTOCOL 16's top-level fields, every
// method's id, path, verb, parameters and parameterOrder, and a schema for
// every $ref, with items for every array.
func TestDiscovery_clientsCanBuildFromIt(t *testing.T) {
	_, ts := open(t, t.TempDir())
	doc := discoveryOf(t, ts.URL)
	for k, v := range map[string]any{"kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "arvados:v1",
		"name": "arvados", "version": "v1", "protocol": "rest", "servicePath": "arvados/v1/", "basePath": "/arvados/v1/",
		"batchPath": "batch", "rootUrl": ts.URL + "/", "baseUrl": ts.URL + "/arvados/v1/", "uuidPrefix": "zzzzz"} {
		assert.Equal(t, v, doc[k], k)
	}
	for _, k := range []string{"revision", "blobSignatureTtl", "defaultCollectionReplication", "maxRequestSize", "parameters", "auth"} {
		assert.Contains(t, doc, k)
	}
	schemas := doc["schemas"].(map[string]any)
	var checkSchema func(where string, s map[string]any)
	checkSchema = func(where string, s map[string]any) {
		if ref, ok := s["$ref"].(string); ok {
			assert.Contains(t, schemas, ref, "%s refers to a missing schema", where)
		}
		if s["type"] == "array" {
			items, ok := s["items"].(map[string]any)
			if assert.True(t, ok, "%s: an array without items", where) {
				checkSchema(where+".items", items)
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for name, p := range props {
				checkSchema(where+"."+name, p.(map[string]any))
			}
		}
	}
	for name, s := range schemas {
		checkSchema("schemas."+name, s.(map[string]any))
	}
	resources := doc["resources"].(map[string]any)
	for _, want := range []string{"users.current", "users.get", "collections.create", "collections.get", "collections.list",
		"collections.update", "collections.delete", "links.create", "links.list", "links.delete", "logs.create", "logs.list",
		"keep_services.accessible", "keep_services.list", "api_client_authorizations.create", "api_client_authorizations.list",
		"api_client_authorizations.current", "api_client_authorizations.delete", "configs.get",
		"groups.create", "groups.get", "groups.list", "groups.update", "groups.delete", "groups.contents", "groups.trash", "groups.untrash"} {
		r, m, _ := strings.Cut(want, ".")
		res, ok := resources[r].(map[string]any)
		if assert.True(t, ok, "resource %s", r) {
			assert.Contains(t, res["methods"], m, want)
		}
	}
	placeholder := regexp.MustCompile(`\{([a-z_]+)\}`)
	for rname, r := range resources {
		for mname, m := range r.(map[string]any)["methods"].(map[string]any) {
			m := m.(map[string]any)
			where := rname + "." + mname
			assert.Equal(t, "arvados."+where, m["id"])
			assert.Contains(t, []any{"GET", "POST", "PUT", "DELETE"}, m["httpMethod"], where)
			path := m["path"].(string)
			assert.False(t, strings.HasPrefix(path, "/"), "%s: path is relative to servicePath", where)
			params := m["parameters"].(map[string]any)
			var order []string
			for _, o := range m["parameterOrder"].([]any) {
				order = append(order, o.(string))
			}
			var inPath []string
			for _, sm := range placeholder.FindAllStringSubmatch(path, -1) {
				inPath = append(inPath, sm[1])
				p := params[sm[1]].(map[string]any)
				assert.Equal(t, "path", p["location"], where)
				assert.Equal(t, true, p["required"], where)
			}
			assert.Equal(t, inPath, order, "%s: parameterOrder names the path parameters", where)
			for pname, p := range params {
				p := p.(map[string]any)
				assert.Contains(t, []any{"path", "query"}, p["location"], "%s.%s", where, pname)
				if d, ok := p["default"]; ok {
					assert.IsType(t, "", d, "%s.%s: defaults are strings", where, pname)
				}
			}
			if req, ok := m["request"].(map[string]any); ok {
				body := req["properties"].(map[string]any)
				assert.Len(t, body, 1, where)
				for _, ref := range body {
					checkSchema(where+".request", ref.(map[string]any))
				}
			}
			if resp, ok := m["response"].(map[string]any); ok {
				checkSchema(where+".response", resp)
			}
		}
	}
}

// Every method the document lists is served (calling it never gets "no
// such route"), and every route of the table is in the document: the two
// are made from one table, and this holds them to it.
func TestDiscovery_everyMethodIsServedAndEveryRouteDescribed(t *testing.T) {
	s, ts := open(t, t.TempDir())
	u := users(t, s, ts)
	admin := u["admin"]
	// An object of each resource, for the {uuid} of its methods.
	objects := map[string]string{}
	make := func(res, body string) {
		r := apiCall(t, ts, admin, "POST", "/arvados/v1/"+res, "application/json", body)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", res, r.raw)
		objects[res] = r.body["uuid"].(string)
	}
	make("collections", `{"collection":{"name":"d"}}`)
	make("links", `{"link":{"link_class":"tag","name":"x","head_uuid":"`+objects["collections"]+`"}}`)
	make("logs", `{"log":{"event_type":"note"}}`)
	make("api_client_authorizations", `{"api_client_authorization":{}}`)
	make("uploader_accounts", `{"uploader_account":{"name":"u"}}`)
	// Not the admin's own: users.unsetup would revoke the admin's token.
	other, _, err := s.CreateUser(context.Background(), arvados.User{FullName: "Other", IsActive: true})
	require.NoError(t, err)
	objects["users"] = other.UUID
	objects["keep_services"] = "zzzzz-bi6l4-000000000000000"
	make("groups", `{"group":{"name":"p","group_class":"project"}}`)

	doc := discoveryOf(t, ts.URL)
	described := map[string]bool{}
	for rname, r := range doc["resources"].(map[string]any) {
		for mname, m := range r.(map[string]any)["methods"].(map[string]any) {
			m := m.(map[string]any)
			described[rname+"."+mname] = true
			path := strings.ReplaceAll(m["path"].(string), "{uuid}", objects[rname])
			body := ""
			if _, ok := m["request"]; ok {
				body = `{"` + singular(rname) + `":{}}`
			}
			verb := m["httpMethod"].(string)
			if mname == "delete" { // last, so that the others find their object
				defer func() {
					r := apiCall(t, ts, admin, verb, "/arvados/v1/"+path, "application/json", body)
					assert.NotContains(t, r.raw, "no such route", "%s.%s", rname, mname)
				}()
				continue
			}
			r := apiCall(t, ts, admin, verb, "/arvados/v1/"+path, "application/json", body)
			assert.NotContains(t, r.raw, "no such route", "%s.%s: %s %s", rname, mname, verb, path)
			assert.NotEqual(t, http.StatusMethodNotAllowed, r.status, "%s.%s", rname, mname)
		}
	}
	var missing []string
	for _, rt := range s.routes {
		if !described[rt.resource+"."+rt.method] {
			missing = append(missing, rt.resource+"."+rt.method)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "routes missing from the discovery document")
	assert.Len(t, described, len(s.routes), "one method per route")

	// groups.contents, as upstream describes it: the project's UUID as a
	// query parameter; the server also routes groups/{uuid}/contents.
	contents := doc["resources"].(map[string]any)["groups"].(map[string]any)["methods"].(map[string]any)["contents"].(map[string]any)
	assert.Equal(t, "groups/contents", contents["path"])
	assert.Equal(t, "query", contents["parameters"].(map[string]any)["uuid"].(map[string]any)["location"])
	make("groups", `{"group":{"name":"fresh","group_class":"project"}}`) // the first was trashed above
	for _, p := range []string{"/arvados/v1/groups/contents?uuid=" + objects["groups"], "/arvados/v1/groups/" + objects["groups"] + "/contents"} {
		r := apiCall(t, ts, admin, "GET", p, "", "")
		assert.Equal(t, http.StatusOK, r.status, "%s: %s", p, r.raw)
	}
	group := doc["schemas"].(map[string]any)["Group"].(map[string]any)
	assert.Equal(t, "j7d0g", group["uuidPrefix"])
	for _, attr := range []string{"group_class", "can_write", "can_manage", "is_trashed"} {
		assert.Contains(t, group["properties"], attr)
	}
	assert.Contains(t, doc["schemas"].(map[string]any)["Collection"].(map[string]any)["properties"], "can_write")
}
