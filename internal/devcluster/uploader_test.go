package devcluster

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// The table of what an uploader token may and may not do, against
// the real API server and proxy.
func TestUploaderAccount_rules(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: t.TempDir(), TLS: true, Proxy: true, AuthCacheTTL: 300 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	owner := c.Client(c.UserToken)
	acct, err := owner.CreateUploaderAccount(ctx, "sequencer 1", nil, "")
	require.NoError(t, err)
	require.Regexp(t, `^v2/zzzzz-gj3su-[0-9a-z]{15}/`, acct.APIToken)
	up := c.Client(acct.APIToken)
	upKeep := keepclient.NewKeep(up, keepclient.KeepOptions{})

	// Upload through the proxy: allowed.
	res, err := upKeep.Put(ctx, []byte("sequencer data"), keepclient.PutOptions{Replicas: 2})
	require.NoError(t, err)
	mine, err := up.CreateCollection(ctx, map[string]any{"name": "run", "manifest_text": ". " + res.Locator + " 0:14:reads.fastq\n"}, true)
	require.NoError(t, err, "create collection")
	assert.Equal(t, acct.UUID, mine.OwnerUUID)

	// The owner's own collection, and another user's.
	ores, err := keepclient.NewKeep(owner, keepclient.KeepOptions{}).Put(ctx, []byte("owner data"), keepclient.PutOptions{})
	require.NoError(t, err)
	theirs, err := owner.CreateCollection(ctx, map[string]any{"name": "owner's", "manifest_text": ". " + ores.Locator + " 0:10:x\n"}, true)
	require.NoError(t, err)
	_, otherTok, err := c.API.CreateUser(ctx, arvados.User{FullName: "Other", IsActive: true})
	require.NoError(t, err)
	other := c.Client(otherTok)
	ores2, err := keepclient.NewKeep(other, keepclient.KeepOptions{}).Put(ctx, []byte("other data"), keepclient.PutOptions{})
	require.NoError(t, err)
	stranger, err := other.CreateCollection(ctx, map[string]any{"name": "other's", "manifest_text": ". " + ores2.Locator + " 0:10:y\n"}, true)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		call   func() error
		status int // 0 = allowed
	}{
		{"update own collection", func() error {
			_, err := up.UpdateCollection(ctx, mine.UUID, map[string]any{"name": "run (renamed)"})
			return err
		}, 0},
		{"update owner's collection", func() error {
			_, err := up.UpdateCollection(ctx, theirs.UUID, map[string]any{"name": "x"})
			return err
		}, 404},
		{"link on own collection", func() error {
			_, err := up.CreateLink(ctx, map[string]any{"link_class": "tag", "name": "run-1", "head_uuid": mine.UUID})
			return err
		}, 0},
		{"link on someone else's collection", func() error {
			_, err := up.CreateLink(ctx, map[string]any{"link_class": "tag", "name": "x", "head_uuid": stranger.UUID})
			return err
		}, 403},
		{"permission link", func() error {
			_, err := up.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_read", "head_uuid": mine.UUID, "tail_uuid": acct.OwnerUUID})
			return err
		}, 403},
		{"create token", func() error { _, err := up.CreateToken(ctx, map[string]any{}); return err }, 403},
		{"create user", func() error {
			return up.Call(ctx, http.MethodPost, "arvados/v1/users", nil, map[string]any{"user": map[string]any{"full_name": "x"}}, nil)
		}, 403},
		{"create uploader account", func() error { _, err := up.CreateUploaderAccount(ctx, "nested", nil, ""); return err }, 403},
		{"list users", func() error { return up.Call(ctx, http.MethodGet, "arvados/v1/users", nil, nil, nil) }, 403},
		{"read owner's collection", func() error { _, err := up.GetCollection(ctx, theirs.UUID); return err }, 404},
		{"delete own collection (abort cleans up its partial collection)", func() error {
			scratch, err := up.CreateCollection(ctx, map[string]any{"name": "partial"}, true)
			if err != nil {
				return err
			}
			return up.Call(ctx, http.MethodDelete, "arvados/v1/collections/"+scratch.UUID, nil, nil, nil)
		}, 0},
		{"delete owner's collection", func() error {
			return up.Call(ctx, http.MethodDelete, "arvados/v1/collections/"+theirs.UUID, nil, nil, nil)
		}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.status == 0 {
				assert.NoError(t, err)
				return
			}
			assert.True(t, keepclient.IsStatus(err, tc.status), "want %d, got %v", tc.status, err)
		})
	}

	// The owner sees and changes the uploader's collection; another user
	// cannot see it.
	got, err := owner.GetCollection(ctx, mine.UUID)
	require.NoError(t, err)
	assert.Equal(t, "run (renamed)", got.Name)
	_, err = owner.UpdateCollection(ctx, mine.UUID, map[string]any{"description": "checked"})
	assert.NoError(t, err)
	_, err = other.GetCollection(ctx, mine.UUID)
	assert.True(t, keepclient.IsStatus(err, 404), "%v", err)
	accts, err := owner.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	require.Len(t, accts, 1)
	assert.Empty(t, accts[0].APIToken, "the token is shown only at creation")

	// Deactivation stops API use at once and proxy use within the cache TTL.
	_, err = other.DeactivateUploaderAccount(ctx, acct.UUID)
	assert.True(t, keepclient.IsStatus(err, 404), "only the owner may deactivate: %v", err)
	_, err = owner.DeactivateUploaderAccount(ctx, acct.UUID)
	require.NoError(t, err)
	_, err = up.CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, 401), "%v", err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = upKeep.Put(ctx, []byte("after deactivation"), keepclient.PutOptions{Replicas: 1})
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.ErrorContains(t, err, "[403]", "the proxy refuses the revoked token once its cache entry expires")

	// An expired account is refused.
	exp := time.Now().Add(time.Second)
	short, err := owner.CreateUploaderAccount(ctx, "short-lived", &exp, "")
	require.NoError(t, err)
	require.NoError(t, func() error { _, err := c.Client(short.APIToken).CurrentUser(ctx); return err }())
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	_, err = c.Client(short.APIToken).CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, 401), "%v", err)
}
