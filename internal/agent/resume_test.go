package agent_test

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/internal/store"
	"github.com/arv-upload/arv-upload/keepclient"
)

// testBlockSize is the block size the uploaders of these tests plan with
// (uploader, agent.WithBlockSize), so that a handful of blocks is little
// data.
const testBlockSize = 1 << 20

// blockTree writes nbig files of exactly half a block (one block each, named
// big0..) and some small files packed after them, and returns path ->
// content.
func blockTree(t *testing.T, root string, seed int64, nbig int) map[string][]byte {
	write, want := treeWriter(t, root, seed)
	sizes := rand.New(rand.NewSource(seed + 1))
	for i := 0; i < nbig; i++ {
		write(fmt.Sprintf("big%d", i), testBlockSize/2)
	}
	for i := 0; i < 20; i++ {
		write(fmt.Sprintf("small/f%02d", i), 1+sizes.Intn(5000))
	}
	write("z.txt", 100)
	return want
}

// readBack reads every file of a collection from Keep.
func readBack(t *testing.T, ctx context.Context, c *keepclient.Client, keep *keepclient.Keep, uuid string) map[string][]byte {
	coll, err := c.GetCollection(ctx, uuid)
	require.NoError(t, err)
	m, err := arvados.ParseManifest(coll.ManifestText)
	require.NoError(t, err)
	got := map[string][]byte{}
	for _, f := range m.Files {
		var data []byte
		for _, s := range f.Segments {
			b, err := keep.Get(ctx, s.Locator)
			require.NoError(t, err)
			data = append(data, b[s.Offset:s.Offset+s.Length]...)
		}
		got[f.Path] = data
	}
	return got
}

// assertStoredOnce checks that Keep confirmed no block twice.
func assertStoredOnce(t *testing.T, kw *keepWriter) {
	t.Helper()
	seen := map[string]bool{}
	for _, h := range kw.stored {
		assert.False(t, seen[h], "block %s stored twice", h)
		seen[h] = true
	}
}

func assertSameFiles(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	assert.Len(t, got, len(want))
	for p, w := range want {
		g, ok := got[p]
		if assert.True(t, ok, "missing %q", p) {
			assert.True(t, string(w) == string(g), "content of %q", p)
		}
	}
}

// cluster starts a dev cluster (no proxy) for the test and returns the
// demo user's API and Keep clients.
func cluster(t *testing.T) (*keepclient.Client, *keepclient.Keep) {
	cl, err := devcluster.Start(context.Background(), devcluster.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	c := cl.Client(cl.UserToken)
	return c, keepclient.NewKeep(c, keepclient.KeepOptions{})
}

// newKW returns a keepWriter over keep.
func newKW(keep *keepclient.Keep) *keepWriter { return &keepWriter{keep: keep, puts: map[string]int{}} }

type job struct {
	path string
	j    *store.Journal
}

func newJob(t *testing.T, dir string, opts agent.Options) *job {
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := store.Open(path, 0)
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	require.NoError(t, j.SetMeta(agent.JobMeta{Job: "j", Dir: dir, Options: opts, Created: time.Now()}))
	return &job{path: path, j: j}
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) add(m string) { w.mu.Lock(); w.msgs = append(w.msgs, m); w.mu.Unlock() }
func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "\n")
}

func uploader(t *testing.T, j agent.Journal, kw *keepWriter, c *keepclient.Client, fp string, w *warnings, ckpt time.Duration) *agent.Uploader {
	up, err := agent.New(agent.WithBlockSize(agent.Config{Journal: j, Keep: kw, API: c, TokenFingerprint: fp, Warn: w.add,
		CheckpointInterval: ckpt, ChangeRetryWait: 10 * time.Millisecond}, testBlockSize))
	require.NoError(t, err)
	return up
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// An uploader account's token is revoked mid-run: the run fails with a
// clear error and stays resumable; the owner resumes it with their own
// token. The blocks the partial collection pinned get fresh signatures for
// the owner's token from the API server instead of being sent again, the
// partial collection becomes the finished one, and it is the collection an
// uninterrupted run makes.
func TestUpload_tokenRevokedMidRun_ownerResumesWithoutResending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, AuthCacheTTL: time.Millisecond})
	require.NoError(t, err)
	defer cl.Close()
	owner := cl.Client(cl.UserToken)
	acct, err := owner.CreateUploaderAccount(ctx, "sequencer", nil, "")
	require.NoError(t, err)
	seq := cl.Client(acct.APIToken)
	src := t.TempDir()
	want := blockTree(t, src, 3, 4)
	opts := agent.Options{Name: "run 9", Threads: 1}

	ref := newJob(t, src, opts)
	refMeta, err := uploader(t, ref.j, &keepWriter{keep: keepclient.NewKeep(owner, keepclient.KeepOptions{}), puts: map[string]int{}}, owner, "owner", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	jb := newJob(t, src, opts)
	kw := &keepWriter{keep: keepclient.NewKeep(seq, keepclient.KeepOptions{}), puts: map[string]int{}}
	var w warnings
	up := uploader(t, jb.j, kw, seq, "uploader", &w, -1)
	kw.before = func(n int) {
		if n != 3 {
			return
		}
		waitFor(t, "two blocks journaled", func() bool { return up.Progress().BlocksStored >= 2 })
		require.NoError(t, up.Checkpoint(ctx))
		_, err := owner.DeactivateUploaderAccount(ctx, acct.UUID)
		require.NoError(t, err)
		time.Sleep(10 * time.Millisecond) // past the proxy's auth cache TTL
	}
	meta, err := up.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "403", "the proxy refuses the revoked token")
	assert.Equal(t, agent.StateFailed, meta.State)
	require.NotEmpty(t, meta.PartialUUID)
	require.Len(t, kw.stored, 2)

	// The owner sees the partial collection: complete files and the rest.
	part, err := owner.GetCollection(ctx, meta.PartialUUID)
	require.NoError(t, err)
	assert.Contains(t, part.Name, "partial")
	assert.Equal(t, acct.UUID, part.OwnerUUID)
	for _, h := range kw.stored {
		assert.Contains(t, part.ManifestText, h, "the partial collection pins every stored block")
	}
	_, err = arvados.ParseManifest(part.ManifestText)
	require.NoError(t, err)

	kw2 := &keepWriter{keep: keepclient.NewKeep(owner, keepclient.KeepOptions{}), puts: map[string]int{}}
	var w2 warnings
	got, err := uploader(t, jb.j, kw2, owner, "owner", &w2, -1).Run(ctx)
	require.NoError(t, err, w2.String())
	assert.Contains(t, w2.String(), "token differs")
	assert.NotContains(t, w2.String(), "sent again")
	for _, h := range kw.stored {
		assert.Zero(t, kw2.puts[h], "block %s stored before the revocation was sent again", h)
	}
	assert.Equal(t, refMeta.PDH, got.PDH)
	assert.NotEqual(t, meta.PartialUUID, got.CollectionUUID, "the finished collection is a new one")
	assertTrashed(t, owner, meta.PartialUUID)
	coll, err := owner.GetCollection(ctx, got.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, "run 9", coll.Name)
	direct := keepclient.NewKeep(owner, keepclient.KeepOptions{Services: keepclient.ServicesFromEnv(strings.Join(cl.KeepstoreURLs, " "))})
	assertSameFiles(t, want, readBack(t, ctx, owner, direct, got.CollectionUUID))
}

// Ctrl-C (context cancelled) saves the partial collection before the run
// returns, and a resume finishes it into the same collection an
// uninterrupted run makes.
func TestUpload_interruptSavesPartialCollection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 5, 3)
	opts := agent.Options{Name: "interrupted", Threads: 1}

	ref := newJob(t, src, opts)
	refMeta, err := uploader(t, ref.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	jb := newJob(t, src, opts)
	kw := newKW(keep)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	kw.before = func(n int) {
		if n == 3 {
			waitFor(t, "two blocks journaled", func() bool { return up.Progress().BlocksStored >= 2 })
			cancel()
		}
	}
	meta, err := up.Run(runCtx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, agent.StateInterrupted, meta.State)
	require.NotEmpty(t, meta.PartialUUID, "the partial collection is saved on interrupt")
	part, err := c.GetCollection(ctx, meta.PartialUUID)
	require.NoError(t, err)
	var stored int
	require.NoError(t, jb.j.EachBlock(ctx, func(b agent.BlockRecord) error {
		if b.Stored {
			stored++
			assert.Contains(t, part.ManifestText, b.Hash)
		}
		return nil
	}))
	assert.GreaterOrEqual(t, stored, 2)
	assert.Contains(t, part.ManifestText, " 0:524288:big0", "complete files are listed in the partial collection")

	// Make the stored signatures look about to expire: the resume must
	// take fresh ones from the partial collection, not send blocks again.
	var aging []agent.BlockRecord
	require.NoError(t, jb.j.EachBlock(ctx, func(b agent.BlockRecord) error {
		if b.Stored {
			b.Expiry = time.Now().Add(time.Hour).Unix()
			aging = append(aging, b)
		}
		return nil
	}))
	require.NoError(t, jb.j.PutBlocks(aging))

	got, err := uploader(t, jb.j, kw, c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, refMeta.PDH, got.PDH)
	assert.NotEqual(t, meta.PartialUUID, got.CollectionUUID)
	assertTrashed(t, c, meta.PartialUUID)
	assertStoredOnce(t, kw)
	require.NoError(t, jb.j.EachBlock(ctx, func(b agent.BlockRecord) error {
		assert.Greater(t, b.Expiry, time.Now().Add(72*time.Hour).Unix(), "block %d has a fresh signature", b.Seq)
		assert.Equal(t, b.Expiry, arvados.SignatureExpiry(b.Locator).Unix())
		return nil
	}))
	assertSameFiles(t, want, readBack(t, ctx, c, keep, got.CollectionUUID))
}

// Periodic checkpoints run while uploading (here every few milliseconds)
// and the finished collection is the partial one, renamed.
func TestUpload_periodicCheckpoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	blockTree(t, src, 6, 3)
	jb := newJob(t, src, agent.Options{Name: "periodic", Threads: 1})
	kw := newKW(keep)
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, 5*time.Millisecond)
	var partial string
	kw.before = func(n int) {
		if n == 3 { // two blocks stored: a checkpoint lists them while the upload goes on
			waitFor(t, "a checkpoint with stored blocks", func() bool {
				partial = up.Progress().PartialUUID
				if partial == "" {
					return false
				}
				pc, err := c.GetCollection(ctx, partial)
				return err == nil && strings.Contains(pc.ManifestText, "+A")
			})
		}
	}
	got, err := up.Run(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, partial, got.CollectionUUID, "the finished collection is a new one")
	assertTrashed(t, c, partial)
	coll, err := c.GetCollection(ctx, got.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, "periodic", coll.Name)
	assert.NotContains(t, coll.ManifestText, "arv-upload-partial")
}

// assertTrashed checks that a collection is in the trash.
func assertTrashed(t *testing.T, c *keepclient.Client, uuid string) {
	t.Helper()
	_, err := c.GetCollection(context.Background(), uuid)
	assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "collection %s is trashed: %v", uuid, err)
}

// A file that grows after it was planned, while the upload runs, is
// detected when read, its block skipped, and the tree planned again: the
// collection has the new content, and the files already stored are neither
// read nor sent again.
func TestUpload_fileGrowsWhileUploading(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 7, 4)
	jb := newJob(t, src, agent.Options{Name: "grows", Threads: 1})
	kw := newKW(keep)
	var mu sync.Mutex
	reads := map[string]int{}
	kw.before = func(n int) {
		if n == 1 { // z.txt sits in the last (packed) block, not read yet
			f, err := os.OpenFile(filepath.Join(src, "z.txt"), os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString("appended while uploading")
			require.NoError(t, err)
			require.NoError(t, f.Close())
			want["z.txt"] = append(want["z.txt"], "appended while uploading"...)
		}
	}
	var w warnings
	up := uploader(t, jb.j, kw, c, "t", &w, -1)
	up.SetReadHook(func(p string) { mu.Lock(); reads[p]++; mu.Unlock() })
	got, err := up.Run(ctx)
	require.NoError(t, err)
	assert.Contains(t, w.String(), "z.txt")
	assert.Contains(t, w.String(), "planning those files again")
	assert.NotContains(t, w.String(), "since the last run", "one warning for one cause")
	for i := 0; i < 4; i++ {
		assert.Equal(t, 1, reads[fmt.Sprintf("big%d", i)], "big%d read once", i)
	}
	for h, n := range kw.puts {
		assert.LessOrEqual(t, n, 1, "block %s PUT %d times", h, n)
	}
	assertSameFiles(t, want, readBack(t, ctx, c, keep, got.CollectionUUID))
}

// A file that never stops changing makes the run give up after a few
// attempts with ErrFileChanged; the job stays resumable.
func TestUpload_fileKeepsChanging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("stable"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "log"), []byte("x"), 0o644))
	jb := newJob(t, src, agent.Options{})
	up := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1)
	// The log is written to whenever it is about to be read, in every
	// attempt (a writer on a timer would depend on the scheduling).
	up.SetReadHook(func(p string) {
		if p != "log" {
			return
		}
		f, err := os.OpenFile(filepath.Join(src, "log"), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			f.WriteString("more\n")
			f.Close()
		}
	})
	meta, err := up.Run(ctx)
	require.ErrorIs(t, err, agent.ErrFileChanged)
	assert.Contains(t, err.Error(), filepath.Join(src, "log"))
	assert.Contains(t, err.Error(), "arv-upload resume")
	assert.Equal(t, agent.StateFailed, meta.State)

	// Once the writer has stopped, the job completes.
	got, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, agent.StateDone, got.State)
}

// After an outage, the tree changes (one stored file touched, one added):
// the resume reads only what changed or was not stored, never a stored,
// unchanged file, and gives the same collection as a fresh upload of the
// changed tree.
func TestUpload_replanReadsOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 11, 3)
	jb := newJob(t, src, agent.Options{Name: "replan", Threads: 1})
	kw := &keepWriter{keep: keep, puts: map[string]int{}, failAt: 3}
	_, err := uploader(t, jb.j, kw, c, "t", &warnings{}, -1).Run(ctx)
	require.ErrorIs(t, err, errInjected)
	require.Len(t, kw.stored, 2, "big0 and big1 stored")

	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(src, "big0"), later, later))
	require.NoError(t, os.WriteFile(filepath.Join(src, "new.txt"), []byte("new"), 0o644))
	want["new.txt"] = []byte("new")

	var mu sync.Mutex
	reads := map[string]int{}
	kw.failAt = 0
	var w warnings
	up := uploader(t, jb.j, kw, c, "t", &w, -1)
	up.SetReadHook(func(p string) { mu.Lock(); reads[p]++; mu.Unlock() })
	got, err := up.Run(ctx)
	require.NoError(t, err)
	up.SetReadHook(nil)
	assert.Contains(t, w.String(), "files changed since the last run")
	assert.Zero(t, reads["big1"], "a stored, unchanged file is not read again")
	assert.Equal(t, 1, reads["big0"], "a touched file is read again")
	assert.Equal(t, 1, reads["big2"])
	assert.Equal(t, 1, reads["new.txt"])
	for h, n := range kw.puts {
		assert.LessOrEqual(t, n, 1, "block %s PUT %d times", h, n)
	}
	assertSameFiles(t, want, readBack(t, ctx, c, keep, got.CollectionUUID))

	fresh := newJob(t, src, agent.Options{Name: "fresh", Threads: 1})
	freshMeta, err := uploader(t, fresh.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, freshMeta.PDH, got.PDH)
}

// fullJournal fails writes of stored blocks with ENOSPC while armed, as a
// full disk under the state directory would.
type fullJournal struct {
	agent.Journal
	mu   sync.Mutex
	full bool
}

func (f *fullJournal) setFull(v bool) { f.mu.Lock(); f.full = v; f.mu.Unlock() }

func (f *fullJournal) PutBlocks(bs []agent.BlockRecord) error {
	f.mu.Lock()
	full := f.full
	f.mu.Unlock()
	if full {
		return fmt.Errorf("write %s: %w", "job.db", syscall.ENOSPC)
	}
	return f.Journal.PutBlocks(bs)
}

// A full journal disk stops the run with an error that says so; once
// there is space, resume completes the same collection.
func TestUpload_journalDiskFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 13, 2)
	ref := newJob(t, src, agent.Options{Name: "full"})
	refMeta, err := uploader(t, ref.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	jb := newJob(t, src, agent.Options{Name: "full", Threads: 1})
	fj := &fullJournal{Journal: jb.j}
	kw := newKW(keep)
	kw.before = func(n int) {
		if n == 2 {
			fj.setFull(true)
		}
	}
	_, err = uploader(t, fj, kw, c, "t", &warnings{}, -1).Run(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSPC)
	assert.Contains(t, err.Error(), "disk full")

	fj.setFull(false)
	kw.before = nil
	got, err := uploader(t, fj, kw, c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, refMeta.PDH, got.PDH)
	assertSameFiles(t, want, readBack(t, ctx, c, keep, got.CollectionUUID))
}

// A checkpoint runs while the upload goes on: a block stored between
// measuring the partial manifest and sending it must not change what is
// sent (it did: the body no longer matched its Content-Length, and every
// checkpoint of a busy upload failed).
func TestUpload_checkpointWhileBlocksAreStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	blockTree(t, src, 17, 3)
	jb := newJob(t, src, agent.Options{Name: "busy", Threads: 1})
	kw := &keepWriter{keep: keep, puts: map[string]int{}, failAt: 3}
	_, err := uploader(t, jb.j, kw, c, "t", &warnings{}, -1).Run(ctx)
	require.ErrorIs(t, err, errInjected)
	require.Len(t, kw.stored, 2)

	var stored, unstored []agent.BlockRecord
	require.NoError(t, jb.j.EachBlock(ctx, func(b agent.BlockRecord) error {
		if b.Stored {
			stored = append(stored, b)
		} else {
			unstored = append(unstored, b)
		}
		return nil
	}))
	require.NotEmpty(t, unstored)
	sent := false
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	up.SetBeforeSend(func() {
		// As the committer would: one more block journaled as stored.
		b := unstored[0]
		b.Stored, b.Hash, b.Locator, b.Expiry = true, stored[0].Hash, stored[0].Locator, stored[0].Expiry
		require.NoError(t, jb.j.PutBlocks([]agent.BlockRecord{b}))
		sent = true
	})
	// A new run's first checkpoint (the failed run saved one already).
	require.NoError(t, up.Checkpoint(ctx))
	assert.True(t, sent)
}
