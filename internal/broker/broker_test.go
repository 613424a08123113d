package broker_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/internal/testutil"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/broker"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// syncBuffer is a log sink the tests read while servers write it.
type syncBuffer = testutil.SyncBuffer

type env struct {
	cl         *devcluster.Cluster
	adminToken string // the broker's, scoped to AdminScopes
	url        string // the broker, host:port over HTTPS
	log        *syncBuffer
	bodies     *syncBuffer // every response body the broker sent
}

// start runs a dev cluster (our API server plays the upstream) and the
// broker in front of it with an admin token scoped to AdminScopes.
func start(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true, Proxy: true, AuthCacheTTL: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	tok, err := cl.Client(cl.AdminToken).CreateToken(ctx, map[string]any{"scopes": broker.AdminScopes})
	require.NoError(t, err)
	e := &env{cl: cl, adminToken: tok.TokenV2(), log: &syncBuffer{}, bodies: &syncBuffer{}}
	b, err := broker.New(broker.Options{Admin: cl.Client(e.adminToken), Logger: slog.New(slog.NewJSONHandler(e.log, nil))})
	require.NoError(t, err)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, r)
		e.bodies.Write(rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	e.url = strings.TrimPrefix(srv.URL, "https://")
	return e
}

// client calls the broker with token.
func (e *env) client(t *testing.T, token string) *keepclient.Client {
	c, err := keepclient.NewClient(keepclient.Config{APIHost: e.url, Token: token, Insecure: true, MaxElapsed: time.Second})
	require.NoError(t, err)
	return c
}

func (e *env) project(t *testing.T, token, name string) arvados.Group {
	var g arvados.Group
	require.NoError(t, e.cl.Client(token).Call(context.Background(), http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": name, "group_class": "project"}}, &g))
	return g
}

// The whole life of a broker-made account on our API server as upstream:
// create with a drop-box project, upload there through the proxy, list,
// get, deactivate, after which the token is refused and the grant is gone.
func TestBroker_lifecycle(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	owner := e.client(t, e.cl.UserToken)
	box := e.project(t, e.cl.UserToken, "drop box")
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)

	acct, err := owner.CreateUploaderAccount(ctx, "sequencer", &exp, box.UUID)
	require.NoError(t, err)
	require.Regexp(t, `^v2/zzzzz-gj3su-[0-9a-z]{15}/`, acct.APIToken)
	assert.Equal(t, "sequencer", acct.Name)
	assert.Equal(t, box.UUID, acct.ProjectUUID)
	me, err := e.cl.Client(e.cl.UserToken).CurrentUser(ctx)
	require.NoError(t, err)
	assert.Equal(t, me.UUID, acct.OwnerUUID)

	// The token is the uploader's, scoped and expiring as asked.
	up := e.cl.Client(acct.APIToken)
	cur, err := up.CurrentToken(ctx)
	require.NoError(t, err)
	assert.Equal(t, arvados.UploaderScopes, cur.Scopes)
	require.NotNil(t, cur.ExpiresAt)
	assert.WithinDuration(t, exp, *cur.ExpiresAt, time.Second)

	// It uploads into the drop box through the proxy.
	res, err := keepclient.NewKeep(up, keepclient.KeepOptions{}).Put(ctx, []byte("reads"), keepclient.PutOptions{Replicas: 2})
	require.NoError(t, err)
	coll, err := up.CreateCollection(ctx, map[string]any{"name": "run 1", "owner_uuid": box.UUID,
		"manifest_text": ". " + res.Locator + " 0:5:reads.fastq\n"}, true)
	require.NoError(t, err)
	_, err = e.cl.Client(e.cl.UserToken).GetCollection(ctx, coll.UUID)
	require.NoError(t, err, "the owner reads the upload")

	list, err := owner.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, acct.UUID, list[0].UUID)
	assert.True(t, list[0].IsActive)
	assert.Empty(t, list[0].APIToken)
	require.NotNil(t, list[0].ExpiresAt)
	assert.True(t, exp.Equal(*list[0].ExpiresAt))

	// Another user sees none of it.
	_, otherTok, err := e.cl.API.CreateUser(ctx, arvados.User{FullName: "Other", IsActive: true})
	require.NoError(t, err)
	other := e.client(t, otherTok)
	list, err = other.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	_, err = other.DeactivateUploaderAccount(ctx, acct.UUID)
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "%v", err)

	got, err := owner.DeactivateUploaderAccount(ctx, acct.UUID)
	require.NoError(t, err)
	assert.False(t, got.IsActive)
	_, err = up.CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, http.StatusUnauthorized), "the token is gone: %v", err)
	time.Sleep(300 * time.Millisecond) // the proxy's auth cache TTL
	_, err = keepclient.NewKeep(up, keepclient.KeepOptions{}).Put(ctx, []byte("more reads"), keepclient.PutOptions{})
	assert.Error(t, err, "the proxy refuses the token")

	list, err = owner.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "a deactivated account is still listed (the owner's link stays)")
	assert.False(t, list[0].IsActive)
	assert.Equal(t, "sequencer", list[0].Name)

	assert.NotContains(t, e.log.String(), secret(e.adminToken))
	assert.NotContains(t, e.bodies.String(), secret(e.adminToken))
}

func secret(tok string) string { return tok[strings.LastIndex(tok, "/")+1:] }

// The broker refuses uploader tokens, inactive users, scoped tokens and a
// project the owner cannot manage, with the upstream's statuses.
func TestBroker_refusals(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	owner := e.client(t, e.cl.UserToken)
	acct, err := owner.CreateUploaderAccount(ctx, "sequencer", nil, "")
	require.NoError(t, err)

	// A project someone else owns and shares with the owner for writing.
	adminC := e.cl.Client(e.cl.AdminToken)
	shared := e.project(t, e.cl.AdminToken, "shared")
	me, err := e.cl.Client(e.cl.UserToken).CurrentUser(ctx)
	require.NoError(t, err)
	_, err = adminC.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_write", "tail_uuid": me.UUID, "head_uuid": shared.UUID})
	require.NoError(t, err)
	hidden := e.project(t, e.cl.AdminToken, "hidden")

	_, inactiveTok, err := e.cl.API.CreateUser(ctx, arvados.User{FullName: "Gone", IsActive: false})
	require.NoError(t, err)
	scoped, err := e.cl.Client(e.cl.UserToken).CreateToken(ctx, map[string]any{"scopes": []string{"GET /arvados/v1/users/current"}})
	require.NoError(t, err)

	for _, tc := range []struct {
		name, token, project string
		status               int
	}{
		{"uploader account", acct.APIToken, "", http.StatusForbidden},
		{"inactive user", inactiveTok, "", http.StatusForbidden},
		{"scoped token", scoped.TokenV2(), "", http.StatusForbidden},
		{"no token", "", "", http.StatusUnauthorized},
		{"bad token", "v2/zzzzz-gj3su-000000000000000/nope", "", http.StatusUnauthorized},
		{"project only writable", e.cl.UserToken, shared.UUID, http.StatusForbidden},
		{"project not readable", e.cl.UserToken, hidden.UUID, http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client(t, tc.token).CreateUploaderAccount(ctx, "nested", nil, tc.project)
			assert.True(t, keepclient.IsStatus(err, tc.status), "want %d: %v", tc.status, err)
		})
	}
	// Nothing half-made was left: the owner still has exactly one account.
	list, err := owner.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 1)

	// A user the owner manages but the broker did not make is not an
	// uploader account: the broker will not unsetup it.
	_, _, err = e.cl.API.CreateUser(ctx, arvados.User{FullName: "Colleague", IsActive: true})
	require.NoError(t, err)
	var users arvados.List[arvados.User]
	require.NoError(t, adminC.Call(ctx, http.MethodGet, "arvados/v1/users", nil, nil, &users))
	var colleague string
	for _, u := range users.Items {
		if u.FullName == "Colleague" {
			colleague = u.UUID
		}
	}
	require.NotEmpty(t, colleague)
	_, err = adminC.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_manage", "tail_uuid": me.UUID,
		"head_uuid": colleague, "properties": map[string]any{broker.PropertyKey: map[string]any{"name": "forged"}}})
	require.NoError(t, err)
	_, err = owner.DeactivateUploaderAccount(ctx, colleague)
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "%v", err)

	assert.NotContains(t, e.log.String(), secret(e.adminToken))
	assert.NotContains(t, e.bodies.String(), secret(e.adminToken))
	assert.NotContains(t, e.log.String(), secret(e.cl.UserToken))
}
