package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Issue 13.1: the whole cluster (API server and keepstores) goes away in
// the middle of an upload and comes back on the same data directory a few
// seconds later. The run waits and retries, says so in its progress, and
// finishes with the collection an uninterrupted run makes, sending no
// block that was stored before the outage again. (The clients here give up
// within half a second, so the outage outlasts their own retries, as a
// network outage of an hour outlasts the default ones.)
func TestUpload_outage_clusterStopsAndComesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: dir})
	require.NoError(t, err)
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); cl.Close(); mu.Unlock() })
	c, err := keepclient.NewClient(keepclient.Config{APIHost: cl.APIHost, Token: cl.UserToken, Scheme: "http", MaxElapsed: 500 * time.Millisecond})
	require.NoError(t, err)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{Retries: -1})

	src := t.TempDir()
	want := blockTree(t, src, 31, 5)
	ref, err := uploader(t, newJob(t, src, agent.Options{Name: "ref", Threads: 1}).j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)

	jb := newJob(t, src, agent.Options{Name: "outage", Threads: 1, RetryFor: time.Minute})
	kw := newKW(keep)
	var w warnings
	var sawRetrying atomic.Bool
	var lastError atomic.Value
	up, err := agent.New(agent.WithBlockSize(agent.Config{Journal: jb.j, Keep: kw, API: c, TokenFingerprint: "t", Warn: w.add,
		CheckpointInterval: -1, RetryWait: 200 * time.Millisecond,
		OnProgress: func(p agent.Progress) {
			if p.Retrying {
				sawRetrying.Store(true)
				lastError.Store(p.LastError)
			}
		}}, testBlockSize))
	require.NoError(t, err)
	var storedBefore []string
	kw.before = func(n int) {
		if n != 3 {
			return
		}
		waitFor(t, "two blocks journaled", func() bool { return up.Progress().BlocksStored >= 2 })
		kw.mu.Lock()
		storedBefore = append(storedBefore, kw.stored...)
		kw.mu.Unlock()
		mu.Lock()
		require.NoError(t, cl.Close())
		mu.Unlock()
		go func() {
			time.Sleep(3 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			var err error
			cl, err = devcluster.Start(ctx, devcluster.Options{Dir: dir})
			if err != nil {
				t.Errorf("restart the cluster: %v", err)
			}
		}()
	}
	meta, err := up.Run(ctx)
	require.NoError(t, err, w.String())
	assert.True(t, sawRetrying.Load(), "progress showed the retry")
	assert.NotEmpty(t, lastError.Load(), "and the error being retried")
	assert.Contains(t, w.String(), "retrying in")
	assert.Equal(t, ref.PDH, meta.PDH)
	assert.False(t, up.Progress().Retrying)
	require.Len(t, storedBefore, 2)
	kw.mu.Lock()
	for _, h := range storedBefore {
		n := 0
		for _, s := range kw.stored {
			if s == h {
				n++
			}
		}
		assert.Equal(t, 1, n, "block %s stored before the outage was not sent again", h)
	}
	kw.mu.Unlock()
	assertSameFiles(t, want, readBack(t, ctx, c, keep, meta.CollectionUUID))
}

// With RetryFor 0 an outage fails the run at once (resumably), as before.
func TestUpload_outage_noRetryFailsAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	c, err := keepclient.NewClient(keepclient.Config{APIHost: cl.APIHost, Token: cl.UserToken, Scheme: "http", MaxElapsed: 200 * time.Millisecond})
	require.NoError(t, err)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{Retries: -1})
	src := t.TempDir()
	blockTree(t, src, 32, 3)
	kw := newKW(keep)
	kw.before = func(n int) {
		if n == 2 {
			cl.Close()
		}
	}
	var w warnings
	meta, err := uploader(t, newJob(t, src, agent.Options{Name: "no retry", Threads: 1}).j, kw, c, "t", &w, -1).Run(ctx)
	require.Error(t, err)
	assert.True(t, keepclient.IsTemporary(err), "%v", err)
	assert.Equal(t, agent.StateFailed, meta.State)
	assert.NotContains(t, w.String(), "retrying in")
}

// What retrying cannot fix is not retried: an unreadable file, a full
// disk, a refused token, an invalid request (syscall.Errno satisfies
// net.Error, so a file's permission error once looked like an outage).
func TestRetryable(t *testing.T) {
	t.Parallel()
	_, perm := os.Open(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, perm)
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("read x: %w", perm), false},
		{fmt.Errorf("write journal: %w", syscall.ENOSPC), false},
		{fmt.Errorf("put: %w", syscall.ECONNREFUSED), true},
		{&keepclient.APIError{Status: 503}, true},
		{&keepclient.APIError{Status: 422}, false},
		{&keepclient.APIError{Status: 401}, false},
		{fmt.Errorf("x: %w", context.Canceled), false},
	} {
		assert.Equal(t, c.want, agent.Retryable(c.err), "%v", c.err)
	}
}
