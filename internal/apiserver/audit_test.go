package apiserver

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 14.4: any user could create block_put records, and with
// object_owner_uuid set to a victim the forgery showed in the victim's log
// list. Reserved event types now need the audit identity (the system user
// or a configured audit user), and object_owner_uuid is the server's.
func TestServer_logs_reservedEventTypes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{DataDir: dir})
	require.NoError(t, err)
	auditor, auditTok, err := s.CreateUser(ctx, arvados.User{FullName: "proxy audit", IsActive: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	// The audit user is configured at start, as `arv-server api --audit-user`.
	s, err = Open(Options{DataDir: dir, AuditUsers: []string{auditor.UUID}})
	require.NoError(t, err)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	tok := users(t, s, ts)
	tok["root"], tok["auditor"] = s.SystemRootToken(), auditTok

	const (
		refused = 403
		ok      = 200
	)
	for _, tc := range []struct {
		eventType string
		want      map[string]int // by caller
	}{
		{"block_put", map[string]int{"root": ok, "auditor": ok, "admin": refused, "user": refused}},
		{" Block_PUT", map[string]int{"root": ok, "auditor": ok, "admin": refused, "user": refused}},
		{"create", map[string]int{"root": ok, "auditor": ok, "admin": refused, "user": refused}},
		{"delete", map[string]int{"root": ok, "auditor": ok, "admin": refused, "user": refused}},
		{"login", map[string]int{"root": ok, "auditor": ok, "admin": refused, "user": refused}},
		{"block_put_note", map[string]int{"root": ok, "auditor": ok, "admin": ok, "user": ok}},
		{"stderr", map[string]int{"root": ok, "auditor": ok, "admin": ok, "user": ok}},
	} {
		t.Run(tc.eventType, func(t *testing.T) {
			for who, want := range tc.want {
				body := jsonBody(t, map[string]any{"log": map[string]any{
					"event_type": tc.eventType, "object_uuid": "acbd18db4cc2f85cedef654fccc4a4d8+3",
					"properties": map[string]any{"user_uuid": "zzzzz-tpzed-000000000000001"},
				}})
				r := apiCall(t, ts, tok[who], "POST", "/arvados/v1/logs", "application/json", body)
				assert.Equal(t, want, r.status, "%s: %s", who, r.raw)
				if want == refused {
					assert.Contains(t, r.raw, "reserved for the cluster's audit identity", who)
				}
			}
		})
	}
	// Nothing refused was stored: every block_put there is comes from the
	// system user or the audit user.
	var logs arvados.List[arvados.Log]
	require.NoError(t, client(t, ts, tok["root"]).Call(ctx, "GET", "arvados/v1/logs", url.Values{
		"filters": {`[["event_type","ilike","%block_put"]]`},
	}, nil, &logs))
	require.Len(t, logs.Items, 4, "block_put and \" Block_PUT\", each by root and the auditor")
	for _, l := range logs.Items {
		assert.Contains(t, []string{s.systemUserUUID(), auditor.UUID}, l.OwnerUUID)
	}
}

func TestServer_logs_ownersAreTheServers(t *testing.T) {
	ctx := context.Background()
	s, ts := open(t, t.TempDir())
	victim, victimTok, err := s.CreateUser(ctx, arvados.User{FullName: "victim", IsActive: true})
	require.NoError(t, err)
	attacker, attackerTok, err := s.CreateUser(ctx, arvados.User{FullName: "attacker", IsActive: true})
	require.NoError(t, err)
	coll, err := client(t, ts, victimTok).CreateCollection(ctx, map[string]any{"name": "mine"}, false)
	require.NoError(t, err)

	post := func(tok string, attrs map[string]any) reply {
		return apiCall(t, ts, tok, "POST", "/arvados/v1/logs", "application/json", jsonBody(t, map[string]any{"log": attrs}))
	}
	// The client may not set either owner.
	for _, attr := range []string{"object_owner_uuid", "owner_uuid"} {
		r := post(attackerTok, map[string]any{"event_type": "note", "object_uuid": coll.UUID, attr: victim.UUID})
		assert.Equal(t, 422, r.status, "%s: %s", attr, r.raw)
		assert.Contains(t, r.raw, attr)
	}
	// Without them the record is the attacker's, and names no owner of an
	// object the attacker cannot read.
	r := post(attackerTok, map[string]any{"event_type": "note", "object_uuid": coll.UUID})
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, attacker.UUID, r.body["owner_uuid"])
	assert.Equal(t, "", r.body["object_owner_uuid"])
	// The victim's own record about its collection gets the real owner.
	r = post(victimTok, map[string]any{"event_type": "note", "object_uuid": coll.UUID})
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, victim.UUID, r.body["object_owner_uuid"])
	mine := r.body["uuid"]

	// So the victim's log list holds its own record only.
	r = apiCall(t, ts, victimTok, "GET", "/arvados/v1/logs", "", "")
	require.Equal(t, 200, r.status, r.raw)
	items := r.body["items"].([]any)
	require.Len(t, items, 1, r.raw)
	assert.Equal(t, mine, items[0].(map[string]any)["uuid"])
}

func TestOpen_auditUsersAreUserUUIDs(t *testing.T) {
	for _, bad := range []string{"", "admin", "zzzzz-4zz18-0123456789abcde", "zzzzz-tpzed-0123456789abcd"} {
		_, err := Open(Options{DataDir: t.TempDir(), AuditUsers: []string{bad}})
		assert.ErrorContains(t, err, "not a user UUID", "%q", bad)
	}
}
