package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// An upload slot, made with the owner's own token: its token, scoped to
// one collection, uploads a tree into that collection through the proxy
// with `start --update-collection` (updates only), and can do nothing else;
// a second upload into the filled slot is refused.
func TestAccountSlot_uploadWithUpdatesOnly(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	owner := cl.Client(cl.UserToken)
	var box arvados.Group
	require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "drop box", "group_class": "project"}}, &box))
	base := slices.Clip(append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_HOST_INSECURE=1",
		"XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir()))

	r := runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+cl.UserToken), "account", "create", "--slot",
		"--project-uuid", box.UUID, "--name", "run 9 slot", "--expires", "7d", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var s keepclient.UploadSlot
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	require.NotEmpty(t, s.APIToken)
	require.NotNil(t, s.ExpiresAt)
	slotTok := cl.Client(s.APIToken)
	cur, err := slotTok.CurrentToken(ctx)
	require.NoError(t, err)
	assert.Equal(t, arvados.SlotScopes(s.CollectionUUID), cur.Scopes)

	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "lane1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "lane1", "reads.fastq"), []byte("@r1\nACGT\n+\nIIII\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "summary.txt"), []byte("ok\n"), 0o644))
	up := append(base, "ARVADOS_API_TOKEN="+s.APIToken)
	r = runCLI(ctx, t, bin, up, "start", "--progress", "none", "--update-collection", s.CollectionUUID, src)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, s.CollectionUUID, strings.TrimSpace(r.stdout))

	coll, err := owner.GetCollection(ctx, s.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, box.UUID, coll.OwnerUUID)
	assert.Equal(t, "run 9 slot", coll.Name, "the slot keeps its name")
	assert.Equal(t, int64(2), coll.FileCount)
	list, err := owner.ListCollections(ctx, keepclient.ListOptions{Filters: [][]any{{"owner_uuid", "=", box.UUID}}})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1, "no partial or finishing collection was made")

	// Nothing else: no new collection, no other collection, no links.
	_, err = slotTok.CreateCollection(ctx, map[string]any{"name": "x"}, false)
	assert.True(t, keepclient.IsStatus(err, http.StatusForbidden), "%v", err)
	_, err = slotTok.CreateLink(ctx, map[string]any{"link_class": "tag", "name": "x", "head_uuid": s.CollectionUUID})
	assert.True(t, keepclient.IsStatus(err, http.StatusForbidden), "%v", err)
	_, err = slotTok.ListCollections(ctx, keepclient.ListOptions{})
	assert.True(t, keepclient.IsStatus(err, http.StatusForbidden), "%v", err)

	r = runCLI(ctx, t, bin, up, "start", "--progress", "none", "--update-collection", s.CollectionUUID, "--job", "again", src)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "not empty")
	r = runCLI(ctx, t, bin, up, "start", "--update-collection", s.CollectionUUID, "--link", "tag:x", src)
	assert.Equal(t, 2, r.code, "--link with --update-collection is a usage error")
}
