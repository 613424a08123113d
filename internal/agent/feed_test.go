package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/keepclient"
)

// The upload runs beside the plan of a new job: the first block is PUT
// while the plan is still walking (here the plan waits, at a file after
// the first block, until Keep has been asked for it). The collection is
// the one a plan made first gives: same PDH as a run whose plan is over
// before any block is read (a dry run's plan reused).
func TestUpload_besideThePlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 31, 4) // big0..big3, one block each, then small/...

	refMeta := plannedFirst(t, src, keep, c)

	jb := newJob(t, src, agent.Options{Name: "beside", Threads: 2})
	kw := newKW(keep)
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	firstPut := make(chan string, 1)
	kw.before = func(n int) {
		if n == 1 {
			firstPut <- up.Progress().Phase
		}
	}
	up.SetPlanHook(func(path string) {
		if path != "big2" {
			return
		}
		select {
		case phase := <-firstPut:
			assert.Equal(t, "scanning", phase, "the first block went out while the plan was being made")
		case <-time.After(20 * time.Second):
			t.Error("no block was PUT before the plan reached big2")
		}
	})
	meta, err := up.Run(ctx)
	require.NoError(t, err)
	assertSameUpload(t, refMeta, meta, up, kw, want, c, keep)
}

// plannedFirst uploads src as a job whose plan is made whole before any
// block is read (a dry run's plan, reused): the reference for runs whose
// upload goes beside the plan.
func plannedFirst(t *testing.T, src string, keep *keepclient.Keep, c *keepclient.Client) agent.JobMeta {
	ctx := context.Background()
	ref := newJob(t, src, agent.Options{Name: "reference", Threads: 2})
	up := uploader(t, ref.j, newKW(keep), c, "t", &warnings{}, -1)
	_, err := up.Plan(ctx)
	require.NoError(t, err)
	meta, err := up.Run(ctx)
	require.NoError(t, err)
	return meta
}

// assertSameUpload checks that a run made the reference's collection, its
// progress complete, every block stored once and every file as written.
func assertSameUpload(t *testing.T, ref, meta agent.JobMeta, up *agent.Uploader, kw *keepWriter, want map[string][]byte, c *keepclient.Client, keep *keepclient.Keep) {
	t.Helper()
	assert.Equal(t, ref.PDH, meta.PDH)
	assert.Equal(t, ref.BlocksTotal, meta.BlocksTotal)
	assert.Equal(t, ref.BytesTotal, meta.BytesTotal)
	assert.Equal(t, ref.FilesTotal, meta.FilesTotal)
	p := up.Progress()
	assert.Equal(t, p.BlocksTotal, p.BlocksStored)
	assert.Equal(t, p.BytesTotal, p.BytesDone)
	assert.Equal(t, p.FilesTotal, p.FilesDone)
	assertStoredOnce(t, kw)
	assertSameFiles(t, want, readBack(t, context.Background(), c, keep, meta.CollectionUUID))
}

// A plan that fails half-way (a name Arvados cannot store, met after
// blocks were planned and sent) stops the upload beside it, and the
// plan's error is the run's, not the upload's cancellation.
func TestUpload_besideThePlan_planFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	blockTree(t, src, 32, 3)
	bad := filepath.Join(src, "zz\xff")
	require.NoError(t, os.WriteFile(bad, []byte("x"), 0o644))
	jb := newJob(t, src, agent.Options{Name: "plan fails", Threads: 2})
	up := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1)
	_, err := up.Run(ctx)
	require.ErrorIs(t, err, agent.ErrInvalidName)
	assert.Contains(t, err.Error(), "--exclude")
	assert.NotContains(t, err.Error(), "context canceled")

	// Leaving the name out, the job finishes.
	meta, err := jb.j.Meta()
	require.NoError(t, err)
	assert.Empty(t, meta.PlanFingerprint, "no plan was recorded")
	require.NoError(t, os.Remove(bad))
	done, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, agent.StateDone, done.State)
}

// When the upload beside the plan fails (Keep refuses a block), the plan
// still goes on to its end and is recorded, so the next run does not plan
// the tree again.
func TestUpload_besideThePlan_uploadFailsPlanCompletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	want := blockTree(t, src, 33, 4)
	jb := newJob(t, src, agent.Options{Name: "upload fails", Threads: 1})
	kw := newKW(keep)
	kw.failAt = 1
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	up.SetPlanHook(func(path string) {
		if path == "big2" { // the plan goes on after the upload failed
			waitFor(t, "the first PUT to fail", func() bool { kw.mu.Lock(); defer kw.mu.Unlock(); return kw.n >= 1 })
			time.Sleep(50 * time.Millisecond)
		}
	})
	_, err := up.Run(ctx)
	require.ErrorIs(t, err, errInjected)
	meta, err := jb.j.Meta()
	require.NoError(t, err)
	assert.NotEmpty(t, meta.PlanFingerprint, "the plan went on to its end")
	assert.Equal(t, int64(len(want)), meta.FilesTotal)

	var w warnings
	kw2 := newKW(keep)
	done, err := uploader(t, jb.j, kw2, c, "t", &w, -1).Run(ctx)
	require.NoError(t, err)
	assert.NotContains(t, w.String(), "files changed", "the recorded plan is used as it is")
	assert.Equal(t, meta.PlanFingerprint, done.PlanFingerprint)
	assertSameFiles(t, want, readBack(t, ctx, c, keep, done.CollectionUUID))
}

// The packed block the plan is filling is read as its files are planned:
// here the plan, at the 30th small file, waits until the reader has read
// the first one, which it can only do before the block is complete.
// Every byte still ends up in the collection, which is the one a plan
// made first gives.
func TestUpload_besideThePlan_readsTheBlockBeingPlanned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	write, want := treeWriter(t, src, 34)
	for i := range 60 {
		write(fmt.Sprintf("s/f%02d", i), 1000+i)
	}

	refMeta := plannedFirst(t, src, keep, c)

	jb := newJob(t, src, agent.Options{Name: "live", Threads: 2})
	kw := newKW(keep)
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	firstRead := make(chan struct{})
	var once sync.Once
	up.SetReadHook(func(p string) {
		if strings.HasSuffix(p, "f00") {
			once.Do(func() { close(firstRead) })
		}
	})
	up.SetPlanHook(func(path string) {
		if path != "s/f30" {
			return
		}
		awaitOrFail(t, firstRead, "the first file of the block was not read while the block was being planned")
	})
	meta, err := up.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), meta.BlocksTotal, "one packed block")
	assertSameUpload(t, refMeta, meta, up, kw, want, c, keep)
}

// A block is hashed while the blocks before it are being sent, so that a
// PUT ending starts the next at once: here, with one thread, the first
// PUT waits until the second block is hashed, which a putter that hashes
// and sends in turn never does. The collection is still the one a plan
// made first gives.
func TestUpload_hashesTheNextBlockWhileSending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	write, want := treeWriter(t, src, 35)
	for i := range 4 {
		write(fmt.Sprintf("f%d", i), 3*testBlockSize/2)
	}
	refMeta := plannedFirst(t, src, keep, c)

	jb := newJob(t, src, agent.Options{Name: "ahead", Threads: 1})
	kw := newKW(keep)
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	secondHashed := make(chan struct{})
	var hashed atomic.Int32
	up.SetHashHook(func(int64) {
		if hashed.Add(1) == 2 {
			close(secondHashed)
		}
	})
	kw.before = func(n int) {
		if n != 1 {
			return
		}
		awaitOrFail(t, secondHashed, "the second block was not hashed while the first was being sent")
	}
	_, err := up.Plan(ctx)
	require.NoError(t, err)
	meta, err := up.Run(ctx)
	require.NoError(t, err)
	assertSameUpload(t, refMeta, meta, up, kw, want, c, keep)
}

// awaitOrFail waits up to 20 s for ch to close, then fails the test with
// msg (from a hook, so it does not stop the goroutine).
func awaitOrFail(t *testing.T, ch <-chan struct{}, msg string) {
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Error(msg)
	}
}
