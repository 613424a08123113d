package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mkUser creates an active user and returns its UUID and token.
func mkUser(t *testing.T, s *Server, name string) (string, string) {
	t.Helper()
	u, tok, err := s.CreateUser(context.Background(), arvados.User{FullName: name, IsActive: true})
	require.NoError(t, err)
	return u.UUID, tok
}

// send makes one JSON request (body nil: none) and returns the reply.
func send(t *testing.T, ts *httptest.Server, tok, method, path string, body any) reply {
	t.Helper()
	if body == nil {
		return apiCall(t, ts, tok, method, path, "", "")
	}
	return apiCall(t, ts, tok, method, path, "application/json", jsonBody(t, body))
}

// mk creates an object of resource with attrs (under the singular key)
// and returns it; it must succeed.
func mk(t *testing.T, ts *httptest.Server, tok, resource string, attrs map[string]any) map[string]any {
	t.Helper()
	r := send(t, ts, tok, "POST", "/arvados/v1/"+resource, map[string]any{singular(resource): attrs})
	require.Equal(t, http.StatusOK, r.status, "create %s %v: %s", resource, attrs, r.raw)
	return r.body
}

func project(t *testing.T, ts *httptest.Server, tok, name, owner string) string {
	t.Helper()
	attrs := map[string]any{"name": name, "group_class": "project"}
	if owner != "" {
		attrs["owner_uuid"] = owner
	}
	return mk(t, ts, tok, "groups", attrs)["uuid"].(string)
}

func coll(t *testing.T, ts *httptest.Server, tok, name, owner string) string {
	t.Helper()
	attrs := map[string]any{"name": name}
	if owner != "" {
		attrs["owner_uuid"] = owner
	}
	return mk(t, ts, tok, "collections", attrs)["uuid"].(string)
}

// share gives tail the permission level on head, with tok's authority.
func share(t *testing.T, ts *httptest.Server, tok, tail, head, level string) string {
	t.Helper()
	return mk(t, ts, tok, "links", map[string]any{"link_class": "permission", "name": level, "tail_uuid": tail, "head_uuid": head})["uuid"].(string)
}

func uuidsOf(r reply) []string {
	var out []string
	items, _ := r.body["items"].([]any)
	for _, it := range items {
		out = append(out, it.(map[string]any)["uuid"].(string))
	}
	return out
}

// Projects: create (owner defaults to the caller; a project may own
// projects), get, list, update, names unique per owner, moves (no
// cycles), and trash: a trashed project hides everything it holds, at
// any depth, until untrashed.
func TestGroups_projectCRUDAndNesting(t *testing.T) {
	s, ts := open(t, t.TempDir())
	me, tok := mkUser(t, s, "Alice")

	top := mk(t, ts, tok, "groups", map[string]any{"name": "Sequencing", "group_class": "project", "description": "runs"})
	p := top["uuid"].(string)
	assert.Regexp(t, `^zzzzz-j7d0g-[0-9a-z]{15}$`, p)
	assert.Equal(t, "arvados#group", top["kind"])
	assert.Equal(t, me, top["owner_uuid"])
	assert.Equal(t, true, top["can_write"])
	assert.Equal(t, true, top["can_manage"])
	assert.Equal(t, false, top["is_trashed"])
	assert.Equal(t, map[string]any{}, top["properties"])
	sub := project(t, ts, tok, "2026 runs", p)
	deep := project(t, ts, tok, "run 1", sub)
	c := coll(t, ts, tok, "reads", deep)

	r := send(t, ts, tok, "GET", "/arvados/v1/groups/"+sub, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, p, r.body["owner_uuid"])
	r = send(t, ts, tok, "GET", "/arvados/v1/groups", nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.ElementsMatch(t, []string{p, sub, deep}, uuidsOf(r))
	assert.Equal(t, "arvados#groupList", r.body["kind"])
	r = send(t, ts, tok, "GET", "/arvados/v1/groups?filters="+url.QueryEscape(`[["owner_uuid","=","`+p+`"]]`), nil)
	assert.Equal(t, []string{sub}, uuidsOf(r))
	r = send(t, ts, tok, "PUT", "/arvados/v1/groups/"+sub, map[string]any{"group": map[string]any{"description": "this year"}})
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "this year", r.body["description"])

	for name, tc := range map[string]struct {
		method, path string
		body         any
		status       int
	}{
		"same name, same owner": {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "2026 runs", "group_class": "project", "owner_uuid": p}}, 422},
		"no group_class":        {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "x"}}, 422},
		"filter group":          {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "x", "group_class": "filter"}}, 422},
		"slash in a name":       {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "a/b", "group_class": "project"}}, 422},
		"unknown attribute":     {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "x", "group_class": "project", "bogus": 1}}, 422},
		"owned by a collection": {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"name": "x", "group_class": "project", "owner_uuid": c}}, 403},
		"class change":          {"PATCH", "/arvados/v1/groups/" + sub, map[string]any{"group": map[string]any{"group_class": "role"}}, 422},
		"cycle":                 {"PATCH", "/arvados/v1/groups/" + p, map[string]any{"group": map[string]any{"owner_uuid": deep}}, 422},
		"own parent":            {"PATCH", "/arvados/v1/groups/" + p, map[string]any{"group": map[string]any{"owner_uuid": p}}, 422},
		"untrash, not trashed":  {"POST", "/arvados/v1/groups/" + p + "/untrash", nil, 422},
		"no such group":         {"GET", "/arvados/v1/groups/zzzzz-j7d0g-000000000000404", nil, 404},
	} {
		r := send(t, ts, tok, tc.method, tc.path, tc.body)
		assert.Equal(t, tc.status, r.status, "%s: %s", name, r.raw)
	}
	r = send(t, ts, tok, "POST", "/arvados/v1/groups?ensure_unique_name=true", map[string]any{"group": map[string]any{"name": "2026 runs", "group_class": "project", "owner_uuid": p}})
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "2026 runs ("+r.body["uuid"].(string)[12:]+")", r.body["name"])
	dup := r.body["uuid"].(string)

	// Moving a project moves what it holds.
	r = send(t, ts, tok, "PATCH", "/arvados/v1/groups/"+deep, map[string]any{"group": map[string]any{"owner_uuid": dup}})
	require.Equal(t, 200, r.status, r.raw)
	r = send(t, ts, tok, "GET", "/arvados/v1/groups/"+p+"/contents?recursive=true", nil)
	assert.ElementsMatch(t, []string{sub, dup, deep, c}, uuidsOf(r))

	// Trash hides the project and everything under it.
	r = send(t, ts, tok, "POST", "/arvados/v1/groups/"+p+"/trash", nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["is_trashed"])
	assert.NotNil(t, r.body["delete_at"])
	for _, path := range []string{"groups/" + p, "groups/" + deep, "collections/" + c} {
		assert.Equal(t, 404, send(t, ts, tok, "GET", "/arvados/v1/"+path, nil).status, path)
	}
	assert.Empty(t, uuidsOf(send(t, ts, tok, "GET", "/arvados/v1/groups", nil)))
	assert.NotContains(t, uuidsOf(send(t, ts, tok, "GET", "/arvados/v1/collections", nil)), c)
	r = send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"name": "late", "owner_uuid": deep}})
	assert.Equal(t, 422, r.status, "no new collection in a trashed project: %s", r.raw)
	assert.Equal(t, 200, send(t, ts, tok, "GET", "/arvados/v1/groups/"+p+"?include_trash=true", nil).status)
	assert.Len(t, uuidsOf(send(t, ts, tok, "GET", "/arvados/v1/groups?include_trash=true", nil)), 4)
	// A project of the trashed one's name may be made meanwhile; untrash
	// then needs ensure_unique_name.
	project(t, ts, tok, "Sequencing", "")
	r = send(t, ts, tok, "POST", "/arvados/v1/groups/"+p+"/untrash", nil)
	assert.Equal(t, 422, r.status, r.raw)
	r = send(t, ts, tok, "POST", "/arvados/v1/groups/"+p+"/untrash?ensure_unique_name=true", nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, false, r.body["is_trashed"])
	assert.Nil(t, r.body["trash_at"])
	assert.True(t, strings.HasPrefix(r.body["name"].(string), "Sequencing ("), r.body["name"])
	assert.Equal(t, 200, send(t, ts, tok, "GET", "/arvados/v1/collections/"+c, nil).status, "back with its project")

	// DELETE trashes too (as upstream), and is_trashed can be set.
	r = send(t, ts, tok, "DELETE", "/arvados/v1/groups/"+dup, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["is_trashed"])
	assert.Equal(t, 404, send(t, ts, tok, "GET", "/arvados/v1/collections/"+c, nil).status)
	r = send(t, ts, tok, "PATCH", "/arvados/v1/groups/"+sub, map[string]any{"group": map[string]any{"is_trashed": true}})
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["is_trashed"])
	assert.Equal(t, 404, send(t, ts, tok, "GET", "/arvados/v1/groups/"+sub, nil).status)
}

// groups/{uuid}/contents and groups/contents?uuid=: the projects, then the
// collections, a project holds (recursively on request), with filters,
// order, limit and offset; a user's UUID lists its home project.
func TestGroups_contents(t *testing.T) {
	s, ts := open(t, t.TempDir())
	me, tok := mkUser(t, s, "Alice")
	_, otherTok := mkUser(t, s, "Bob")
	p := project(t, ts, tok, "P", "")
	q := project(t, ts, tok, "Q", p)
	c1 := coll(t, ts, tok, "b-reads", p)
	c2 := coll(t, ts, tok, "a-reads", p)
	c3 := coll(t, ts, tok, "deep", q)
	home := coll(t, ts, tok, "home", "")

	r := send(t, ts, tok, "GET", "/arvados/v1/groups/"+p+"/contents", nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "arvados#objectList", r.body["kind"])
	assert.Equal(t, float64(3), r.body["items_available"])
	got := uuidsOf(r)
	require.Len(t, got, 3)
	assert.Equal(t, q, got[0], "projects first")
	assert.ElementsMatch(t, []string{c1, c2}, got[1:])
	for _, it := range r.body["items"].([]any) {
		it := it.(map[string]any)
		assert.NotContains(t, it, "manifest_text")
		assert.Equal(t, true, it["can_write"])
		assert.Contains(t, []any{"arvados#group", "arvados#collection"}, it["kind"])
	}
	// The upstream spelling: uuid as a query parameter.
	r2 := send(t, ts, tok, "GET", "/arvados/v1/groups/contents?uuid="+p, nil)
	require.Equal(t, 200, r2.status, r2.raw)
	assert.Equal(t, got, uuidsOf(r2))

	q1 := func(query string) []string {
		r := send(t, ts, tok, "GET", "/arvados/v1/groups/contents?uuid="+p+"&"+query, nil)
		require.Equal(t, 200, r.status, "%s: %s", query, r.raw)
		return uuidsOf(r)
	}
	assert.ElementsMatch(t, []string{q, c1, c2, c3}, q1("recursive=true"))
	assert.Equal(t, []string{c2, c1}, q1("filters="+url.QueryEscape(`[["uuid","is_a","arvados#collection"]]`)+"&order=name"))
	assert.Equal(t, []string{q}, q1("filters="+url.QueryEscape(`[["uuid","is_a",["arvados#group"]]]`)))
	assert.Equal(t, []string{q, c1}, q1("filters="+url.QueryEscape(`[["collections.name","like","b-%"]]`)))
	assert.Equal(t, []string{c2}, q1("filters="+url.QueryEscape(`[["name","=","a-reads"]]`)))
	assert.Equal(t, []string{q, c2, c1}, q1("order="+url.QueryEscape(`["name asc"]`)))
	assert.Equal(t, []string{q, c1, c2}, q1("order=name%20desc"), "each kind is sorted on its own, projects first")
	assert.Equal(t, []string{c2}, q1("order=name&limit=1&offset=1"))
	r = send(t, ts, tok, "GET", "/arvados/v1/groups/contents?uuid="+p+"&count=none&limit=1", nil)
	assert.NotContains(t, r.body, "items_available")
	assert.Equal(t, float64(1), r.body["limit"])
	for _, bad := range []string{"limit=-1", "order=" + url.QueryEscape(`["name sideways"]`), "order=" + url.QueryEscape(`["x;drop"]`), "count=maybe",
		"filters=" + url.QueryEscape(`[["name","~","x"]]`)} {
		assert.Equal(t, 422, send(t, ts, tok, "GET", "/arvados/v1/groups/contents?uuid="+p+"&"+bad, nil).status, bad)
	}

	// The home project: what the user owns directly.
	r = send(t, ts, tok, "GET", "/arvados/v1/groups/"+me+"/contents", nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.ElementsMatch(t, []string{p, home}, uuidsOf(r))
	// No uuid: everything readable.
	r = send(t, ts, tok, "GET", "/arvados/v1/groups/contents", nil)
	assert.ElementsMatch(t, []string{p, q, c1, c2, c3, home}, uuidsOf(r))

	// Another user sees none of it.
	assert.Equal(t, 404, send(t, ts, otherTok, "GET", "/arvados/v1/groups/"+p+"/contents", nil).status)
	assert.Equal(t, 404, send(t, ts, otherTok, "GET", "/arvados/v1/groups/"+me+"/contents", nil).status)
	r = send(t, ts, otherTok, "GET", "/arvados/v1/groups/contents", nil)
	assert.Empty(t, uuidsOf(r))
	assert.Equal(t, 404, send(t, ts, tok, "GET", "/arvados/v1/groups/"+c1+"/contents", nil).status)
}

// Sharing by permission link: can_read lets read, can_write also write,
// can_manage also share; a permission on a project covers everything in
// it, at any depth; revoking takes it all back; only who may manage the
// head may create or delete a permission link. The flags can_write and
// can_manage say what the caller may do.
func TestPermissions_sharing(t *testing.T) {
	s, ts := open(t, t.TempDir())
	alice, aTok := mkUser(t, s, "Alice")
	bob, bTok := mkUser(t, s, "Bob")
	carol, cTok := mkUser(t, s, "Carol")
	p := project(t, ts, aTok, "P", "")
	q := project(t, ts, aTok, "Q", p)
	c := coll(t, ts, aTok, "in Q", q)
	elsewhere := project(t, ts, aTok, "private", "")

	type ability struct{ read, write, manage bool }
	check := func(who, tok string, want ability) {
		t.Helper()
		for _, path := range []string{"groups/" + p, "groups/" + q, "collections/" + c} {
			r := send(t, ts, tok, "GET", "/arvados/v1/"+path, nil)
			if !want.read {
				assert.Equal(t, 404, r.status, "%s reads %s: %s", who, path, r.raw)
				continue
			}
			if assert.Equal(t, 200, r.status, "%s reads %s: %s", who, path, r.raw) {
				assert.Equal(t, want.write, r.body["can_write"], "%s: can_write on %s", who, path)
				assert.Equal(t, want.manage, r.body["can_manage"], "%s: can_manage on %s", who, path)
			}
		}
		r := send(t, ts, tok, "PATCH", "/arvados/v1/collections/"+c, map[string]any{"collection": map[string]any{"description": who}})
		assert.Equal(t, map[bool]int{true: 200, false: map[bool]int{true: 403, false: 404}[want.read]}[want.write], r.status, "%s updates: %s", who, r.raw)
		r = send(t, ts, tok, "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": q}})
		assert.Equal(t, map[bool]int{true: 200, false: 403}[want.write], r.status, "%s creates in Q: %s", who, r.raw)
		r = send(t, ts, tok, "POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"group_class": "project", "owner_uuid": p}})
		assert.Equal(t, map[bool]int{true: 200, false: 403}[want.write], r.status, "%s creates a subproject: %s", who, r.raw)
		r = send(t, ts, tok, "POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": carol, "head_uuid": q}})
		assert.Equal(t, map[bool]int{true: 200, false: map[bool]int{true: 403, false: 422}[want.read]}[want.manage], r.status, "%s shares Q: %s", who, r.raw)
		if r.status == 200 {
			assert.Equal(t, s.systemUserUUID(), r.body["owner_uuid"])
			assert.Equal(t, 200, send(t, ts, tok, "DELETE", "/arvados/v1/links/"+r.body["uuid"].(string), nil).status)
		}
		if who != "alice" {
			assert.Equal(t, 404, send(t, ts, tok, "GET", "/arvados/v1/groups/"+elsewhere, nil).status, "%s: an unshared project", who)
		}
	}
	check("alice", aTok, ability{true, true, true})
	check("bob", bTok, ability{})

	read := share(t, ts, aTok, bob, p, "can_read")
	check("bob with can_read", bTok, ability{read: true})
	// Bob sees the link that shares with him, but may not revoke it.
	r := send(t, ts, bTok, "GET", "/arvados/v1/links?filters="+url.QueryEscape(`[["link_class","=","permission"]]`), nil)
	assert.Equal(t, []string{read}, uuidsOf(r))
	assert.Equal(t, 403, send(t, ts, bTok, "DELETE", "/arvados/v1/links/"+read, nil).status)
	// contents of a shared project, and what is shared with bob.
	assert.Contains(t, uuidsOf(send(t, ts, bTok, "GET", "/arvados/v1/groups/"+p+"/contents", nil)), q)
	assert.ElementsMatch(t, []string{p}, uuidsOf(send(t, ts, bTok, "GET", "/arvados/v1/groups/contents?exclude_home_project=true&filters="+url.QueryEscape(`[["uuid","is_a","arvados#group"]]`), nil)))

	require.Equal(t, 200, send(t, ts, aTok, "DELETE", "/arvados/v1/links/"+read, nil).status)
	check("bob, revoked", bTok, ability{})
	write := share(t, ts, aTok, bob, p, "can_write")
	check("bob with can_write", bTok, ability{read: true, write: true})
	manage := share(t, ts, aTok, bob, p, "can_manage")
	check("bob with can_write and can_manage", bTok, ability{true, true, true})
	// With can_manage, bob may revoke alice's other grant to him.
	assert.Equal(t, 200, send(t, ts, bTok, "DELETE", "/arvados/v1/links/"+write, nil).status)
	require.Equal(t, 200, send(t, ts, aTok, "DELETE", "/arvados/v1/links/"+manage, nil).status)
	check("bob, revoked again", bTok, ability{})

	// A permission on one collection covers that collection only.
	share(t, ts, aTok, carol, c, "can_read")
	assert.Equal(t, 200, send(t, ts, cTok, "GET", "/arvados/v1/collections/"+c, nil).status)
	assert.Equal(t, 404, send(t, ts, cTok, "GET", "/arvados/v1/groups/"+q, nil).status)
	r = send(t, ts, cTok, "PATCH", "/arvados/v1/collections/"+c, map[string]any{"collection": map[string]any{"name": "x"}})
	assert.Equal(t, 403, r.status, r.raw)

	// Roles: members get the role's permissions, at the weaker level.
	role := mk(t, ts, aTok, "groups", map[string]any{"name": "lab", "group_class": "role"})
	assert.Equal(t, s.systemUserUUID(), role["owner_uuid"], "a role is owned by the system user")
	assert.Equal(t, true, role["can_manage"], "its creator manages it")
	share(t, ts, aTok, role["uuid"].(string), elsewhere, "can_write")
	share(t, ts, aTok, bob, role["uuid"].(string), "can_read")
	r = send(t, ts, bTok, "GET", "/arvados/v1/groups/"+elsewhere, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, false, r.body["can_write"], "can_read on the role, can_write from it: can_read")
	share(t, ts, aTok, carol, role["uuid"].(string), "can_write")
	r = send(t, ts, cTok, "GET", "/arvados/v1/groups/"+elsewhere, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["can_write"])
	assert.Equal(t, false, r.body["can_manage"])

	// Tails must be users or roles; a project is refused, and so is an
	// invalid level.
	r = send(t, ts, aTok, "POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": q, "head_uuid": p}})
	assert.Equal(t, 422, r.status, r.raw)
	r = send(t, ts, aTok, "POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_fly", "tail_uuid": bob, "head_uuid": p}})
	assert.Equal(t, 422, r.status, r.raw)

	// Users: a user manages itself; bob cannot see alice's record.
	r = send(t, ts, aTok, "GET", "/arvados/v1/users/current", nil)
	assert.Equal(t, true, r.body["can_write"])
	assert.Equal(t, true, r.body["can_manage"])
	assert.Equal(t, 404, send(t, ts, bTok, "GET", "/arvados/v1/users/"+alice, nil).status)
	rename := map[string]any{"user": map[string]any{"full_name": "Alice B."}}
	assert.Equal(t, 404, send(t, ts, bTok, "PATCH", "/arvados/v1/users/"+alice, rename).status)
	readAlice := share(t, ts, s.AdminToken(), bob, alice, "can_read")
	r = send(t, ts, bTok, "GET", "/arvados/v1/users/"+alice, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, false, r.body["can_write"])
	assert.Equal(t, 403, send(t, ts, bTok, "PATCH", "/arvados/v1/users/"+alice, rename).status)
	diary := project(t, ts, aTok, "diary", "")
	assert.Equal(t, 404, send(t, ts, bTok, "GET", "/arvados/v1/groups/"+diary, nil).status, "can_read on a user does not reach what it owns")
	require.Equal(t, 200, send(t, ts, aTok, "DELETE", "/arvados/v1/links/"+readAlice, nil).status, "alice manages herself")
	// A can_manage link on a user lets the tail manage what the user owns.
	share(t, ts, s.AdminToken(), bob, alice, "can_manage")
	r = send(t, ts, bTok, "GET", "/arvados/v1/users/"+alice, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["can_manage"])
	assert.Equal(t, 200, send(t, ts, bTok, "PATCH", "/arvados/v1/users/"+alice, rename).status)
	r = send(t, ts, bTok, "GET", "/arvados/v1/groups/"+diary, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["can_manage"])
}

// The permission graph is rebuilt from the store when the server opens,
// and a permission link the store failed to keep grants nothing.
func TestPermissions_storeIsTheTruth(t *testing.T) {
	dir := t.TempDir()
	s, ts := open(t, dir)
	_, aTok := mkUser(t, s, "Alice")
	bob, bTok := mkUser(t, s, "Bob")
	p := project(t, ts, aTok, "P", "")
	c := coll(t, ts, aTok, "c", p)

	faults := &faultyStore{Store: s.store}
	s.store = faults
	faults.set("", "links")
	r := send(t, ts, aTok, "POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_write", "tail_uuid": bob, "head_uuid": p}})
	assert.Equal(t, 500, r.status, r.raw)
	assert.Contains(t, r.raw, errInjected.Error())
	faults.set("", "groups")
	r = send(t, ts, aTok, "PATCH", "/arvados/v1/groups/"+p, map[string]any{"group": map[string]any{"is_trashed": true}})
	assert.Contains(t, r.raw, errInjected.Error())
	faults.set("", "")
	assert.Equal(t, 404, send(t, ts, bTok, "GET", "/arvados/v1/collections/"+c, nil).status, "no grant without the link")
	assert.Equal(t, 200, send(t, ts, aTok, "GET", "/arvados/v1/collections/"+c, nil).status, "not trashed without the write")

	share(t, ts, aTok, bob, p, "can_write")
	ts.Close()
	require.NoError(t, s.Close())
	_, ts2 := open(t, dir)
	r = send(t, ts2, bTok, "GET", "/arvados/v1/collections/"+c, nil)
	require.Equal(t, 200, r.status, "after a restart: %s", r.raw)
	assert.Equal(t, true, r.body["can_write"])
	assert.Equal(t, false, r.body["can_manage"])
}

// An uploader account given can_write on its owner's project (at creation
// with project_uuid, or later by a permission link) uploads into it and
// changes what it uploaded there; it may not change the owner's
// collections in that project, write anywhere else, share, or make
// projects.
func TestPermissions_uploaderInProject(t *testing.T) {
	s, ts := open(t, t.TempDir())
	owner, oTok := mkUser(t, s, "Owner")
	_, otherTok := mkUser(t, s, "Other")
	p := project(t, ts, oTok, "instrument runs", "")
	ownersColl := coll(t, ts, oTok, "reference", p)
	private := project(t, ts, oTok, "private", "")
	stranger := project(t, ts, otherTok, "not yours", "")

	// Only who may manage the project may give an account can_write there.
	r := send(t, ts, otherTok, "POST", "/arvados/v1/uploader_accounts", map[string]any{"uploader_account": map[string]any{"name": "x", "project_uuid": p}})
	assert.Equal(t, 422, r.status, "not even readable: %s", r.raw)
	share(t, ts, oTok, mustUUID(t, ts, otherTok), p, "can_write")
	r = send(t, ts, otherTok, "POST", "/arvados/v1/uploader_accounts", map[string]any{"uploader_account": map[string]any{"name": "x", "project_uuid": p}})
	assert.Equal(t, 403, r.status, "can_write is not can_manage: %s", r.raw)
	r = send(t, ts, oTok, "POST", "/arvados/v1/uploader_accounts", map[string]any{"uploader_account": map[string]any{"name": "x", "project_uuid": ownersColl}})
	assert.Equal(t, 422, r.status, r.raw)

	acct := mk(t, ts, oTok, "uploader_accounts", map[string]any{"name": "sequencer", "project_uuid": p})
	assert.Equal(t, p, acct["project_uuid"])
	up, upTok := acct["uuid"].(string), acct["api_token"].(string)
	r = send(t, ts, oTok, "GET", "/arvados/v1/uploader_accounts/"+up, nil)
	assert.Equal(t, p, r.body["project_uuid"])
	r = send(t, ts, oTok, "GET", "/arvados/v1/links?filters="+url.QueryEscape(`[["tail_uuid","=","`+up+`"]]`), nil)
	require.Len(t, r.body["items"], 1, r.raw)
	assert.Equal(t, "can_write", r.body["items"].([]any)[0].(map[string]any)["name"])

	// The uploader's token reads the project (arv-put and arv-upload check it).
	r = send(t, ts, upTok, "GET", "/arvados/v1/groups/"+p, nil)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["can_write"])

	mine := mk(t, ts, upTok, "collections", map[string]any{"name": "run 1", "owner_uuid": p})
	assert.Equal(t, p, mine["owner_uuid"])
	assert.Equal(t, true, mine["can_write"])
	assert.Equal(t, false, mine["can_manage"])
	m := mine["uuid"].(string)
	for name, tc := range map[string]struct {
		method, path string
		body         any
		status       int
	}{
		"update its upload":            {"PATCH", "/arvados/v1/collections/" + m, map[string]any{"collection": map[string]any{"name": "run 1 (done)"}}, 200},
		"tag its upload":               {"POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "tag", "name": "run", "head_uuid": m}}, 200},
		"read the owner's collection":  {"GET", "/arvados/v1/collections/" + ownersColl, nil, 200},
		"update the owner's":           {"PATCH", "/arvados/v1/collections/" + ownersColl, map[string]any{"collection": map[string]any{"name": "x"}}, 403},
		"delete the owner's":           {"DELETE", "/arvados/v1/collections/" + ownersColl, nil, 403},
		"tag the owner's":              {"POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "tag", "name": "x", "head_uuid": ownersColl}}, 403},
		"upload to a private project":  {"POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": private}}, 403},
		"upload to a stranger's":       {"POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": stranger}}, 403},
		"upload to the owner's home":   {"POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": owner}}, 403},
		"move its upload out":          {"PATCH", "/arvados/v1/collections/" + m, map[string]any{"collection": map[string]any{"owner_uuid": up}}, 403},
		"share its upload":             {"POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": up, "head_uuid": m}}, 403},
		"make a project (scope)":       {"POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"group_class": "project", "owner_uuid": p}}, 403},
		"upload to its own home still": {"POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"name": "home"}}, 200},
	} {
		r := send(t, ts, upTok, tc.method, tc.path, tc.body)
		assert.Equal(t, tc.status, r.status, "%s: %s", name, r.raw)
	}
	// Even with an unscoped token the server-side rules hold.
	full, err := s.newToken(up, []string{"all"}, nil)
	require.NoError(t, err)
	r = send(t, ts, full.TokenV2(), "POST", "/arvados/v1/groups", map[string]any{"group": map[string]any{"group_class": "project", "owner_uuid": p}})
	assert.Equal(t, 403, r.status, r.raw)
	r = send(t, ts, full.TokenV2(), "POST", "/arvados/v1/links", map[string]any{"link": map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": up, "head_uuid": m}})
	assert.Equal(t, 403, r.status, r.raw)

	// The owner sees the upload in the project and changes it.
	r = send(t, ts, oTok, "GET", "/arvados/v1/groups/"+p+"/contents", nil)
	assert.ElementsMatch(t, []string{ownersColl, m}, uuidsOf(r))
	r = send(t, ts, oTok, "PATCH", "/arvados/v1/collections/"+m, map[string]any{"collection": map[string]any{"description": "checked"}})
	assert.Equal(t, 200, r.status, r.raw)

	// An account made without a project can be given one later.
	later := mk(t, ts, oTok, "uploader_accounts", map[string]any{"name": "later"})
	r = send(t, ts, later["api_token"].(string), "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": private}})
	assert.Equal(t, 403, r.status, r.raw)
	share(t, ts, oTok, later["uuid"].(string), private, "can_write")
	r = send(t, ts, later["api_token"].(string), "POST", "/arvados/v1/collections", map[string]any{"collection": map[string]any{"owner_uuid": private}})
	assert.Equal(t, 200, r.status, r.raw)
}

func mustUUID(t *testing.T, ts *httptest.Server, tok string) string {
	r := send(t, ts, tok, "GET", "/arvados/v1/users/current", nil)
	require.Equal(t, 200, r.status, r.raw)
	return r.body["uuid"].(string)
}
