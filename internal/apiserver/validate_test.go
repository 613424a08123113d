package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reply is a raw API response: the status and the decoded JSON body.
type reply struct {
	status int
	body   map[string]any
	raw    string
}

// call sends one request with tok and decodes the reply, which must be a
// JSON object whatever the status.
func apiCall(t *testing.T, ts *httptest.Server, tok, method, path, contentType, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "%s %s: no reply", method, path)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{status: resp.StatusCode, raw: string(raw)}
	require.NoError(t, json.Unmarshal(raw, &r.body), "%s %s: reply is not a JSON object: %q", method, path, raw)
	return r
}

func jsonBody(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// users makes an admin, a normal user and an uploader account (owned by
// the user) and returns their tokens.
func users(t *testing.T, s *Server, ts *httptest.Server) map[string]string {
	_, tok, err := s.CreateUser(context.Background(), arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	r := apiCall(t, ts, tok, "POST", "/arvados/v1/uploader_accounts", "application/json", `{"uploader_account":{"name":"seq"}}`)
	require.Equal(t, 200, r.status, r.raw)
	return map[string]string{"admin": s.AdminToken(), "user": tok, "uploader": r.body["api_token"].(string)}
}

func countCollections(t *testing.T, ts *httptest.Server, tok string) int {
	r := apiCall(t, ts, tok, "GET", "/arvados/v1/collections", "", "")
	require.Equal(t, 200, r.status, r.raw)
	return len(r.body["items"].([]any))
}

// Issue 10.2: manifests and attributes that used to be accepted (or
// silently altered) are refused, and nothing is created.
func TestServer_collectionValidation(t *testing.T) {
	s, ts := open(t, t.TempDir())
	admin := s.AdminToken() // no signatures needed: the manifests are the point
	const h11 = "5eb63bbbe01eeed093cb22bb8f5acdc3+11"
	const maxInt = "9223372036854775807"
	const empty = "d41d8cd98f00b204e9800998ecf8427e+0"
	create := func(attrs string) string { return `{"collection":` + attrs + `}` }
	manifest := func(m string) string { return create(jsonBody(t, map[string]any{"manifest_text": m})) }
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
	}{
		{"length overflows past the stream", "application/json", manifest(". " + h11 + " 1:" + maxInt + ":f\n"), 422},
		{"position and length overflow", "application/json", manifest(". " + h11 + " " + maxInt + ":" + maxInt + ":f\n"), 422},
		{"file sizes overflow", "application/json", manifest(". 5eb63bbbe01eeed093cb22bb8f5acdc3+" + maxInt + " 0:" + maxInt + ":f 0:1:g\n"), 422},
		{"raw non-UTF-8 name in a JSON body", "application/json", create(`{"manifest_text":". ` + empty + ` 0:0:caf` + "\xe9" + `\n"}`), 422},
		{"raw non-UTF-8 name in a form body", "application/x-www-form-urlencoded",
			url.Values{"collection": {`{"manifest_text":". ` + empty + ` 0:0:caf` + "\xe9" + `\n"}`}}.Encode(), 422},
		{"lone surrogate escape in a JSON body", "application/json", create(`{"manifest_text":". ` + empty + ` 0:0:caf\udce9\n"}`), 422},
		{"lone high surrogate escape", "application/json", create(`{"name":"a\ud800b"}`), 422},
		{"non-UTF-8 collection name", "application/json", create(`{"name":"` + "\xff" + `"}`), 422},
		{"escape decoding to non-UTF-8", "application/json", manifest(". " + empty + " 0:0:caf\\351\n"), 422},
		{"escaped NUL in a file name", "application/json", manifest(". " + empty + " 0:0:a\\000b\n"), 422},
		{"NUL in the collection name", "application/json", create(`{"name":"a\u0000b"}`), 422},
		{"replication_desired 0", "application/json", create(`{"replication_desired":0}`), 422},
		{"replication_desired -1", "application/json", create(`{"replication_desired":-1}`), 422},
		{"JSON null body", "application/json", `null`, 400},
		// Still accepted, as upstream.
		{"escapes decoding to UTF-8", "application/json", manifest(". " + empty + " 0:0:caf\\303\\251\n"), 200},
		{"raw UTF-8 name", "application/json", manifest(". " + empty + " 0:0:café\n"), 200},
		{"surrogate pair escape", "application/json", create(`{"name":"\ud83d\ude00"}`), 200},
		{"escaped backslash before u", "application/json", create(`{"name":"a\\udc00"}`), 200},
		{"U+FFFD sent as such", "application/json", create(`{"name":"\ufffd"}`), 200},
		{"replication_desired 1", "application/json", create(`{"replication_desired":1}`), 200},
		{"replication_desired null", "application/json", create(`{"replication_desired":null}`), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countCollections(t, ts, admin)
			r := apiCall(t, ts, admin, "POST", "/arvados/v1/collections?ensure_unique_name=true", tc.contentType, tc.body)
			require.Equal(t, tc.status, r.status, r.raw)
			want := before
			if tc.status == 200 {
				want++
			} else {
				assert.Contains(t, r.body, "errors")
			}
			assert.Equal(t, want, countCollections(t, ts, admin), "collections after the request")
		})
	}

	// Updates are checked the same way and leave the collection as it was.
	r := apiCall(t, ts, admin, "POST", "/arvados/v1/collections", "application/json", create(`{"name":"u","replication_desired":2}`))
	require.Equal(t, 200, r.status, r.raw)
	uuid := r.body["uuid"].(string)
	for _, tc := range []struct{ name, body string }{
		{"replication_desired 0", create(`{"replication_desired":0}`)},
		{"overflow", manifest(". " + h11 + " 1:" + maxInt + ":f\n")},
		{"NUL name", create(`{"name":"\u0000"}`)},
		{"non-UTF-8 name", create(`{"name":"` + "\xff" + `"}`)},
	} {
		t.Run("update "+tc.name, func(t *testing.T) {
			r := apiCall(t, ts, admin, "PATCH", "/arvados/v1/collections/"+uuid, "application/json", tc.body)
			assert.Equal(t, 422, r.status, r.raw)
			got := apiCall(t, ts, admin, "GET", "/arvados/v1/collections/"+uuid, "", "")
			require.Equal(t, 200, got.status)
			assert.Equal(t, "u", got.body["name"])
			assert.Equal(t, 2.0, got.body["replication_desired"])
			assert.Equal(t, "", got.body["manifest_text"])
		})
	}
}

// Issue 10.2: a JSON null body creates nothing, on every create route.
func TestServer_createWithNullBody(t *testing.T) {
	s, ts := open(t, t.TempDir())
	tok := users(t, s, ts)
	for _, res := range []string{"collections", "links", "logs", "users", "api_client_authorizations", "uploader_accounts"} {
		t.Run(res, func(t *testing.T) {
			before := apiCall(t, ts, tok["admin"], "GET", "/arvados/v1/"+res, "", "")
			require.Equal(t, 200, before.status, before.raw)
			r := apiCall(t, ts, tok["admin"], "POST", "/arvados/v1/"+res, "application/json", "null")
			assert.Equal(t, 400, r.status, r.raw)
			after := apiCall(t, ts, tok["admin"], "GET", "/arvados/v1/"+res, "", "")
			assert.Equal(t, len(before.body["items"].([]any)), len(after.body["items"].([]any)))
		})
	}
}

// Issue 10.3: a trailing slash on a listing is ignored, as docs/API.md says.
func TestServer_listWithTrailingSlash(t *testing.T) {
	s, ts := open(t, t.TempDir())
	tok := users(t, s, ts)
	for _, tc := range []struct{ res, kind string }{
		{"users", "arvados#userList"},
		{"api_client_authorizations", "arvados#apiClientAuthorizationList"},
		{"collections", "arvados#collectionList"},
		{"links", "arvados#linkList"},
		{"logs", "arvados#logList"},
		{"keep_services", "arvados#keepServiceList"},
		{"keep_services/accessible", "arvados#keepServiceList"},
		{"uploader_accounts", "arvados#uploaderAccountList"},
	} {
		t.Run(tc.res, func(t *testing.T) {
			for _, p := range []string{"/arvados/v1/" + tc.res, "/arvados/v1/" + tc.res + "/"} {
				r := apiCall(t, ts, tok["admin"], "GET", p, "", "")
				require.Equal(t, 200, r.status, "%s: %s", p, r.raw)
				assert.Equal(t, tc.kind, r.body["kind"], p)
			}
		})
	}
	// Other spellings are still refused.
	for _, p := range []string{"/arvados/v1/collections//", "/arvados/v1//collections", "/arvados/v1/collections/./"} {
		r := apiCall(t, ts, tok["admin"], "GET", p, "", "")
		assert.Equal(t, 400, r.status, "%s: %s", p, r.raw)
	}
}

// Issue 10.3: every UUID field of every route, given malformed UUIDs, gets
// a JSON answer and never a panic (an empty reply), nor a 5xx. Fields
// upstream checks are refused with a 4xx; fields upstream documents as
// free strings (a non-permission link's head and tail, a log's object
// UUIDs, filter operands) are accepted as upstream does (PROTOCOL 9.5, 9.6,
// 15.1), and listings filtered on them find only what matches.
func TestServer_malformedUUIDs(t *testing.T) {
	s, ts := open(t, t.TempDir())
	tok := users(t, s, ts)
	who := []string{"admin", "user", "uploader"}
	self, coll := map[string]string{}, map[string]string{}
	for _, u := range who {
		r := apiCall(t, ts, tok[u], "GET", "/arvados/v1/users/current", "", "")
		require.Equal(t, 200, r.status, r.raw)
		self[u] = r.body["uuid"].(string)
		r = apiCall(t, ts, tok[u], "POST", "/arvados/v1/collections", "application/json", `{"collection":{"name":"own"}}`)
		require.Equal(t, 200, r.status, r.raw)
		coll[u] = r.body["uuid"].(string)
	}
	malformed := []string{
		"x", "zzzzz", "zzzzz-4zz18-", "zzzzz-4zz18-0123456789abcd", "zzzzz-4zz18-0123456789abcdef",
		"ZZZZZ-4ZZ18-0123456789ABCDE", "zzzzz_4zz18_0123456789abcde", "zzzzz-4zz18-0123456789abcdé",
		"zzzzz-4zz18-01234567\x0089abcd", "../../etc/passwd", "zzzzz-tpzed-000000000000000/../x",
	}
	const (
		reject = "4xx"
		accept = "2xx"
	)
	type want map[string]string // by caller; missing = reject
	all := func(w string) want { return want{"admin": w, "user": w, "uploader": w} }
	type tc struct {
		name, method, path string
		body               func(u, v string) any // nil: no body
		missing            bool                  // also try "" (field left empty)
		attr               string                // a listing filtered on attr: items must match
		want               want
	}
	obj := func(key string, attrs map[string]any) any { return map[string]any{key: attrs} }
	cases := []tc{
		{name: "get user", method: "GET", path: "/arvados/v1/users/{v}", want: all(reject)},
		{name: "update user", method: "PATCH", path: "/arvados/v1/users/{v}", want: all(reject),
			body: func(u, v string) any { return obj("user", map[string]any{"full_name": "n"}) }},
		{name: "create user owner_uuid", method: "POST", path: "/arvados/v1/users", want: all(reject),
			body: func(u, v string) any { return obj("user", map[string]any{"owner_uuid": v, "full_name": "n"}) }},
		{name: "delete token", method: "DELETE", path: "/arvados/v1/api_client_authorizations/{v}", want: all(reject)},
		{name: "get token", method: "GET", path: "/arvados/v1/api_client_authorizations/{v}", want: all(reject)},
		{name: "create token owner_uuid", method: "POST", path: "/arvados/v1/api_client_authorizations", want: all(reject),
			body: func(u, v string) any { return obj("api_client_authorization", map[string]any{"owner_uuid": v}) }},
		{name: "get collection", method: "GET", path: "/arvados/v1/collections/{v}", want: all(reject)},
		{name: "update collection", method: "PATCH", path: "/arvados/v1/collections/{v}", want: all(reject),
			body: func(u, v string) any { return obj("collection", map[string]any{"name": "n"}) }},
		{name: "delete collection", method: "DELETE", path: "/arvados/v1/collections/{v}", want: all(reject)},
		{name: "create collection owner_uuid", method: "POST", path: "/arvados/v1/collections", want: all(reject),
			body: func(u, v string) any { return obj("collection", map[string]any{"owner_uuid": v}) }},
		{name: "move collection owner_uuid", method: "PATCH", path: "/arvados/v1/collections/{own}", want: all(reject),
			body: func(u, v string) any { return obj("collection", map[string]any{"owner_uuid": v}) }},
		{name: "get link", method: "GET", path: "/arvados/v1/links/{v}", want: all(reject)},
		{name: "delete link", method: "DELETE", path: "/arvados/v1/links/{v}", want: all(reject)},
		{name: "create link owner_uuid", method: "POST", path: "/arvados/v1/links", want: all(reject),
			body: func(u, v string) any {
				return obj("link", map[string]any{"link_class": "tag", "name": "t", "head_uuid": coll[u], "owner_uuid": v})
			}},
		{name: "create tag link head_uuid", method: "POST", path: "/arvados/v1/links", missing: true,
			want: want{"admin": accept, "user": accept, "uploader": reject},
			body: func(u, v string) any {
				return obj("link", map[string]any{"link_class": "tag", "name": "t", "head_uuid": v})
			}},
		{name: "create tag link tail_uuid", method: "POST", path: "/arvados/v1/links", missing: true, want: all(accept),
			body: func(u, v string) any {
				return obj("link", map[string]any{"link_class": "tag", "name": "t", "head_uuid": coll[u], "tail_uuid": v})
			}},
		{name: "create permission link head_uuid", method: "POST", path: "/arvados/v1/links", missing: true,
			want: want{"admin": accept, "user": reject, "uploader": reject},
			body: func(u, v string) any {
				return obj("link", map[string]any{"link_class": "permission", "name": "can_read", "head_uuid": v, "tail_uuid": self[u]})
			}},
		{name: "create permission link tail_uuid", method: "POST", path: "/arvados/v1/links", missing: true, want: all(reject),
			body: func(u, v string) any {
				return obj("link", map[string]any{"link_class": "permission", "name": "can_read", "head_uuid": coll[u], "tail_uuid": v})
			}},
		{name: "create log object_uuid", method: "POST", path: "/arvados/v1/logs", missing: true,
			want: want{"admin": accept, "user": accept, "uploader": reject}, // uploaders: scope
			body: func(u, v string) any { return obj("log", map[string]any{"event_type": "e", "object_uuid": v}) }},
		{name: "create log object_owner_uuid", method: "POST", path: "/arvados/v1/logs", missing: true,
			want: all(reject), // read-only: the server derives it from object_uuid
			body: func(u, v string) any { return obj("log", map[string]any{"event_type": "e", "object_owner_uuid": v}) }},
		{name: "get uploader account", method: "GET", path: "/arvados/v1/uploader_accounts/{v}", want: all(reject)},
		{name: "deactivate uploader account", method: "POST", path: "/arvados/v1/uploader_accounts/{v}/deactivate", want: all(reject)},
		{name: "get keep service", method: "GET", path: "/arvados/v1/keep_services/{v}", want: all(reject)},
	}
	// Filters on every UUID attribute of every listing (uploaders' scopes
	// allow no listing). The users and api_client_authorizations listings
	// ignore filters (they list what the caller may see), so only the
	// answer is checked there.
	for res, attrs := range map[string][]string{
		"users":                     {"uuid", "owner_uuid"},
		"api_client_authorizations": {"uuid", "owner_uuid"},
		"collections":               {"uuid", "owner_uuid", "current_version_uuid"},
		"links":                     {"uuid", "owner_uuid", "head_uuid", "tail_uuid"},
		"logs":                      {"uuid", "owner_uuid", "object_uuid", "object_owner_uuid"},
	} {
		for _, attr := range attrs {
			for _, op := range []string{"=", "in"} {
				filtered := attr
				if res == "users" || res == "api_client_authorizations" {
					filtered = ""
				}
				cases = append(cases, tc{name: "list " + res + " " + attr + " " + op, method: "GET", attr: filtered,
					path: "/arvados/v1/" + res + "?filters={filter}", want: want{"admin": accept, "user": accept, "uploader": reject},
					body: func(u, v string) any {
						var operand any = v
						if op == "in" {
							operand = []string{v}
						}
						return [][]any{{attr, op, operand}}
					}})
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			values := malformed
			if c.missing {
				values = append([]string{""}, malformed...)
			}
			for _, u := range who {
				for _, v := range values {
					p := strings.ReplaceAll(c.path, "{v}", url.PathEscape(v))
					p = strings.ReplaceAll(p, "{own}", coll[u])
					body, ct := "", ""
					if strings.Contains(p, "{filter}") {
						p = strings.ReplaceAll(p, "{filter}", url.QueryEscape(jsonBody(t, c.body(u, v))))
					} else if c.body != nil {
						body, ct = jsonBody(t, c.body(u, v)), "application/json"
					}
					r := apiCall(t, ts, tok[u], c.method, p, ct, body)
					w := c.want[u]
					if w == accept {
						if assert.Equal(t, 200, r.status, "%s %q: %s", u, v, r.raw) && c.attr != "" {
							items, _ := r.body["items"].([]any)
							for _, it := range items {
								assert.Equal(t, v, it.(map[string]any)[c.attr], "%s %q", u, v)
							}
						}
					} else {
						assert.True(t, r.status >= 400 && r.status < 500, "%s %q: want a 4xx, got %d %s", u, v, r.status, r.raw)
						assert.Contains(t, r.body, "errors", "%s %q", u, v)
					}
				}
			}
		})
	}
	// No object was moved or re-owned on the way.
	for _, u := range who {
		r := apiCall(t, ts, tok["admin"], "GET", "/arvados/v1/collections/"+coll[u], "", "")
		require.Equal(t, 200, r.status, r.raw)
		assert.Equal(t, self[u], r.body["owner_uuid"], u)
	}
}
