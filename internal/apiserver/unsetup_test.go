package apiserver

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// users/{uuid}/unsetup, as upstream: admin only; revokes the user's tokens,
// deletes the permission links it is the tail of, keeps those that point
// at it, clears its prefs and marks it inactive.
func TestServer_usersUnsetup(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	adm := client(t, ts, s.AdminToken())
	_, ownerTok, err := s.CreateUser(ctx, arvados.User{FullName: "Owner", IsActive: true})
	require.NoError(t, err)
	owner := client(t, ts, ownerTok)
	me, err := owner.CurrentUser(ctx)
	require.NoError(t, err)

	var u arvados.User
	require.NoError(t, adm.Call(ctx, http.MethodPost, "arvados/v1/users", nil,
		map[string]any{"user": map[string]any{"first_name": "Machine", "username": "machine1", "is_active": true, "prefs": map[string]any{"k": "v"}}}, &u))
	var proj arvados.Group
	require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "box", "group_class": "project"}}, &proj))
	grant, err := adm.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_write", "tail_uuid": u.UUID, "head_uuid": proj.UUID})
	require.NoError(t, err)
	manage, err := adm.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_manage", "tail_uuid": me.UUID, "head_uuid": u.UUID})
	require.NoError(t, err)
	tok, err := adm.CreateToken(ctx, map[string]any{"owner_uuid": u.UUID, "scopes": []string{"GET /arvados/v1/users/current"}})
	require.NoError(t, err)
	_, err = client(t, ts, tok.TokenV2()).CurrentUser(ctx)
	require.NoError(t, err)

	path := "arvados/v1/users/" + u.UUID + "/unsetup"
	err = owner.Call(ctx, http.MethodPost, path, nil, nil, nil)
	assert.True(t, keepclient.IsStatus(err, http.StatusForbidden), "a manager who is not admin: %v", err)

	var out arvados.User
	require.NoError(t, adm.Call(ctx, http.MethodPost, path, nil, nil, &out))
	assert.False(t, out.IsActive)
	assert.Empty(t, out.Prefs)
	assert.Equal(t, "machine1", out.Username, "the username stays")

	_, err = client(t, ts, tok.TokenV2()).CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, http.StatusUnauthorized), "its token is revoked: %v", err)
	var l arvados.Link
	err = adm.Call(ctx, http.MethodGet, "arvados/v1/links/"+grant.UUID, nil, nil, &l)
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "its grant is deleted: %v", err)
	require.NoError(t, adm.Call(ctx, http.MethodGet, "arvados/v1/links/"+manage.UUID, nil, nil, &l), "the link to it stays")
	var got arvados.User
	require.NoError(t, owner.Call(ctx, http.MethodGet, "arvados/v1/users/"+u.UUID, nil, nil, &got))
	assert.False(t, got.IsActive)
	assert.True(t, got.CanManage)
}

// An admin's token scoped to POST api_client_authorizations may create a
// token for another user (upstream allows any scoped token to); a
// non-admin's scoped token still may not.
func TestServer_scopedTokenCreate(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	u, userTok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	scopes := []string{"POST /arvados/v1/api_client_authorizations"}
	admScoped, err := client(t, ts, s.AdminToken()).CreateToken(ctx, map[string]any{"scopes": scopes})
	require.NoError(t, err)
	tok, err := client(t, ts, admScoped.TokenV2()).CreateToken(ctx, map[string]any{"owner_uuid": u.UUID, "scopes": []string{"GET /arvados/v1/users/current"}})
	require.NoError(t, err)
	assert.Equal(t, u.UUID, tok.OwnerUUID)

	userScoped, err := client(t, ts, userTok).CreateToken(ctx, map[string]any{"scopes": scopes})
	require.NoError(t, err)
	_, err = client(t, ts, userScoped.TokenV2()).CreateToken(ctx, map[string]any{})
	assert.True(t, keepclient.IsStatus(err, http.StatusForbidden), "%v", err)
}

// is_a on an attribute other than uuid checks the kind that UUID names.
func TestServer_filterIsAOnUUIDAttribute(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	adm := client(t, ts, s.AdminToken())
	u, _, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	var proj arvados.Group
	require.NoError(t, adm.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "p", "group_class": "project"}}, &proj))
	toUser, err := adm.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": u.UUID, "head_uuid": proj.UUID})
	require.NoError(t, err)
	_, err = adm.CreateLink(ctx, map[string]any{"link_class": "tag", "name": "x", "head_uuid": proj.UUID})
	require.NoError(t, err)
	got, err := adm.ListLinks(ctx, keepclient.ListOptions{Filters: [][]any{{"tail_uuid", "is_a", "arvados#user"}}})
	require.NoError(t, err)
	require.Len(t, got.Items, 1)
	assert.Equal(t, toUser.UUID, got.Items[0].UUID)
}

// An inactive user's token reads users/current (200, is_active false), as
// upstream, and nothing else.
func TestServer_inactiveUserReadsOnlyCurrent(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "Gone", IsActive: false})
	require.NoError(t, err)
	c := client(t, ts, tok)
	me, err := c.CurrentUser(ctx)
	require.NoError(t, err)
	assert.False(t, me.IsActive)
	_, err = c.CurrentToken(ctx)
	require.NoError(t, err)
	_, err = c.ListCollections(ctx, keepclient.ListOptions{})
	assert.True(t, keepclient.IsStatus(err, http.StatusUnauthorized), "%v", err)
}
