package agent_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// identicalTree writes a tree whose blocks repeat (testBlockSize blocks):
// zero-filled files whose full blocks and tails are identical across files
// and within one file, and two directories of the same small files, packed
// into two identical blocks. It returns path -> content.
func identicalTree(t *testing.T, root string) map[string][]byte {
	want := map[string][]byte{}
	write := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
		want[rel] = data
	}
	write("big", make([]byte, 3*testBlockSize+testBlockSize/4)) // 3 identical blocks and a tail
	for _, p := range []string{"a/z1", "a/z2", "b/z3"} {
		write(p, make([]byte, testBlockSize+testBlockSize/10)) // the same block as big's, and equal tails
	}
	rnd := rand.New(rand.NewSource(7))
	small := make([][]byte, 16) // 16 x 64 KiB fill one block exactly
	for i := range small {
		small[i] = make([]byte, testBlockSize/16)
		rnd.Read(small[i])
	}
	for _, dir := range []string{"p1", "p2"} {
		for i, b := range small {
			write(fmt.Sprintf("%s/f%02d", dir, i), b)
		}
	}
	return want
}

// Identical blocks are PUT at different moments, so Keep signs them in
// different seconds and their signed locators differ. The manifest sent to
// the API server must still be the normalized one (each block once per
// stream, deduplicated by hash and size, never by the signed string), or
// the server's PDH (of the text as sent, stripped) differs from ours. The
// keepstores' clock moves one second per PUT, so every PUT of a repeated
// block gets its own signature, whatever the scheduling.
func TestUpload_identicalBlocksSignedApart_normalizedManifest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	want := identicalTree(t, src)

	// The reference: one thread, one signing second for everything.
	c0, keep0 := cluster(t)
	ref, err := uploader(t, newJob(t, src, agent.Options{Name: "ref", Threads: 1}).j, newKW(keep0), c0, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	var tick atomic.Int64
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), KeepstoreClock: func() time.Time {
		return time.Now().Add(time.Duration(tick.Add(1)) * time.Second)
	}})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	c := cl.Client(cl.UserToken)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{})

	for _, threads := range []int{1, 2, 4, 4, 4} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			jb := newJob(t, src, agent.Options{Name: fmt.Sprintf("identical %d", threads), Threads: threads})
			meta, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
			require.NoError(t, err)
			assert.Equal(t, ref.PDH, meta.PDH, "same collection as a single-threaded upload")

			// The scenario happened: one hash, several signed locators.
			signed := map[string]map[string]bool{}
			require.NoError(t, jb.j.EachBlock(ctx, func(b agent.BlockRecord) error {
				if signed[b.Hash] == nil {
					signed[b.Hash] = map[string]bool{}
				}
				signed[b.Hash][b.Locator] = true
				return nil
			}))
			maxSigs := 0
			for _, s := range signed {
				maxSigs = max(maxSigs, len(s))
			}
			require.Greater(t, maxSigs, 1, "repeated blocks were signed apart")

			coll, err := c.GetCollection(ctx, meta.CollectionUUID)
			require.NoError(t, err)
			assert.Equal(t, meta.PDH, coll.PortableDataHash)
			stripped := arvados.PortableText(coll.ManifestText)
			norm, err := arvados.NormalizeManifest(stripped)
			require.NoError(t, err)
			assert.Equal(t, norm, stripped, "the stored manifest, stripped, is normalized")
			assertEachBlockOncePerStream(t, coll.ManifestText)
			assertSameFiles(t, want, readBack(t, ctx, c, keep, meta.CollectionUUID))
		})
	}
}

// noReuseJournal never finds a stored hash, so that every block is PUT
// even when an identical one is already stored (as happens when identical
// blocks are in flight at the same time).
type noReuseJournal struct{ agent.Journal }

func (noReuseJournal) StoredHash(string) (string, int64, bool) { return "", 0, false }

// A partial collection lists a stored block that no complete file
// references once, however many times it was stored and signed.
func TestCheckpoint_identicalBlocksSignedApart_listedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	identicalTree(t, src)
	var tick atomic.Int64
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), KeepstoreClock: func() time.Time {
		return time.Now().Add(time.Duration(tick.Add(1)) * time.Second)
	}})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	c := cl.Client(cl.UserToken)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{})

	jb := newJob(t, src, agent.Options{Name: "partial", Threads: 1})
	kw := newKW(keep)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	up := uploader(t, noReuseJournal{jb.j}, kw, c, "t", &warnings{}, -1)
	// One thread, every block PUT: the nth PUT is block n-1. Blocks 0-5
	// are a/z1, a/z2, b/z3 (complete), 6-9 big's: stop after two of its
	// (identical) blocks, so that they are in the partial stream.
	kw.before = func(n int) {
		if n == 9 {
			waitFor(t, "eight blocks journaled", func() bool { return up.Progress().BlocksStored >= 8 })
			cancel()
		}
	}
	meta, err := up.Run(runCtx)
	require.ErrorIs(t, err, context.Canceled)
	require.NotEmpty(t, meta.PartialUUID)
	part, err := c.GetCollection(ctx, meta.PartialUUID)
	require.NoError(t, err)
	assert.Contains(t, part.ManifestText, " 0:1153433:z1")
	assert.NotContains(t, part.ManifestText, ":big")
	assertEachBlockOncePerStream(t, part.ManifestText)
}

// assertEachBlockOncePerStream checks that no stream of a manifest names a
// block (hash and size) twice.
func assertEachBlockOncePerStream(t *testing.T, manifest string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(arvados.PortableText(manifest), "\n"), "\n") {
		seen := map[string]bool{}
		for _, w := range strings.Fields(line)[1:] {
			if arvados.IsLocator(w) {
				assert.False(t, seen[w], "block %s twice in stream %q", w, line[:min(len(line), 60)])
				seen[w] = true
			}
		}
	}
}
