package agent_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/keepclient"
)

// A job whose journal was lost goes on in a new journal that adopts its
// partial collection: the new plan is the same, every block the
// collection holds is read and hashed but not sent, the others are sent,
// and the collection is the one an uninterrupted run makes. A block known
// by hash is taken as stored only if its size matches too.
func TestAdoptPartial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	blockTree(t, src, 17, 6)
	opts := agent.Options{Name: "adopt", Threads: 1}

	ref := newJob(t, src, opts)
	refMeta, err := uploader(t, ref.j, newKW(keep), c, "fp", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	// The lost job stored three blocks and checkpointed them.
	lost := newJob(t, src, opts)
	kw := newKW(keep)
	kw.failAt = 4
	up := uploader(t, lost.j, kw, c, "fp", &warnings{}, -1)
	_, err = up.Run(ctx)
	require.Error(t, err)
	require.Len(t, kw.stored, 3)
	meta := up.Meta()
	require.NotEmpty(t, meta.PartialUUID, "the failed run saved the partial collection")

	fresh := newJob(t, src, opts)
	m, err := fresh.j.Meta()
	require.NoError(t, err)
	m.PartialUUID = meta.PartialUUID
	require.NoError(t, fresh.j.SetMeta(m))
	n, err := agent.AdoptPartial(ctx, fresh.j, c, meta.PartialUUID)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	// One more block known by its hash, but with another size: it must
	// be sent all the same.
	var other string
	for _, h := range refBlocks(t, ctx, c, refMeta.CollectionUUID) {
		if !slices.Contains(kw.stored, h) {
			other = h
			break
		}
	}
	require.NotEmpty(t, other)
	require.NoError(t, fresh.j.PutBlocks([]agent.BlockRecord{{Seq: 99, Size: 1, Hash: other, Locator: other + "+1+A" + strings.Repeat("0", 40) + "@7fffffff", Expiry: 1 << 31, Stored: true}}))
	require.NoError(t, fresh.j.DeleteBlocks([]int64{99}))

	kw2 := newKW(keep)
	got, err := uploader(t, fresh.j, kw2, c, "fp", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, refMeta.PDH, got.PDH, "the collection an uninterrupted run makes")
	assert.NotEqual(t, meta.PartialUUID, got.CollectionUUID, "a new collection; the partial one is trashed")
	assertTrashed(t, c, meta.PartialUUID)
	for _, h := range kw.stored {
		assert.Zero(t, kw2.puts[h], "block %s, held by the partial collection, sent again", h)
	}
	assert.Equal(t, 1, kw2.puts[other], "a hash known with another size is sent")
	all := refBlocks(t, ctx, c, refMeta.CollectionUUID)
	assert.Len(t, kw2.stored, len(all)-3+1, "every other block, and the manifest block, sent once")

	_, err = agent.AdoptPartial(ctx, fresh.j, c, meta.PartialUUID)
	assert.ErrorContains(t, err, "already has a plan")
}

// refBlocks returns the hashes of a collection's data blocks.
func refBlocks(t *testing.T, ctx context.Context, c *keepclient.Client, uuid string) []string {
	coll, err := c.GetCollection(ctx, uuid)
	require.NoError(t, err)
	var out []string
	seen := map[string]bool{}
	for _, tok := range strings.Fields(coll.ManifestText) {
		if l, err := arvados.ParseLocator(tok); err == nil && l.Size > 0 && !seen[l.Hash] {
			seen[l.Hash] = true
			out = append(out, l.Hash)
		}
	}
	return out
}
