package agent_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// An upload into an upload slot (Options.UpdateCollection) with the slot's
// token, which may only read and update that collection: an interrupted
// run leaves its partial manifest in the slot, and the resume finishes the
// same collection an ordinary run makes, in the slot, without sending a
// stored block again or making any other collection.
func TestUpload_updateCollection_interruptAndResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer cl.Close()
	owner := cl.Client(cl.UserToken)
	slot, err := owner.CreateUploadSlot(ctx, "slot", "", nil)
	require.NoError(t, err)
	c := cl.Client(slot.APIToken)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{})
	src := t.TempDir()
	want := blockTree(t, src, 7, 3)

	ref := newJob(t, src, agent.Options{Name: "slot", Threads: 1})
	refMeta, err := uploader(t, ref.j, newKW(keepclient.NewKeep(owner, keepclient.KeepOptions{})), owner, "owner", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	jb := newJob(t, src, agent.Options{UpdateCollection: slot.CollectionUUID, Threads: 1})
	kw := newKW(keep)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	up := uploader(t, jb.j, kw, c, "slot", &warnings{}, -1)
	kw.before = func(n int) {
		if n == 3 {
			waitFor(t, "two blocks journaled", func() bool { return up.Progress().BlocksStored >= 2 })
			cancel()
		}
	}
	meta, err := up.Run(runCtx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, slot.CollectionUUID, meta.PartialUUID, "the slot is the partial collection")
	part, err := owner.GetCollection(ctx, slot.CollectionUUID)
	require.NoError(t, err)
	assert.Contains(t, part.ManifestText, " 0:524288:big0", "the slot pins what was stored")

	var w warnings
	got, err := uploader(t, jb.j, kw, c, "slot", &w, -1).Run(ctx)
	require.NoError(t, err, w.String())
	assert.Equal(t, slot.CollectionUUID, got.CollectionUUID)
	assert.Equal(t, refMeta.PDH, got.PDH)
	assertStoredOnce(t, kw)
	coll, err := owner.GetCollection(ctx, slot.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, "slot", coll.Name, "the slot keeps its name")
	assert.False(t, coll.IsTrashed)
	assertSameFiles(t, want, readBack(t, ctx, owner, keepclient.NewKeep(owner, keepclient.KeepOptions{}), slot.CollectionUUID))

	// Links or a project do not go with it.
	bad := newJob(t, src, agent.Options{UpdateCollection: slot.CollectionUUID, Links: []agent.LinkSpec{{Class: "tag", Name: "x"}}})
	_, err = agent.New(agent.Config{Journal: bad.j, Keep: kw, API: c})
	assert.Error(t, err)
}
