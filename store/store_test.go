package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/agent"
)

func reopen(t *testing.T, j *Journal, path string) *Journal {
	t.Helper()
	require.NoError(t, j.Close())
	j2, err := Open(path, 0)
	require.NoError(t, err)
	return j2
}

// A conformance test of agent.Journal on real bbolt files.
func TestJournal_conformance(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := Open(path, 0)
	require.NoError(t, err)
	meta := agent.JobMeta{Job: "j1", Dir: "/data", State: agent.StateRunning, Options: agent.Options{Name: "n", Threads: 3}}
	require.NoError(t, j.SetMeta(meta))
	files := []agent.FileRecord{
		{Key: agent.FileKey("b", "x"), Path: "b/x", Size: 3, Ranges: []agent.Range{{Block: 1, Length: 3}}},
		{Key: agent.FileKey("", "z"), Path: "z", Size: 3},
		{Key: agent.FileKey("a", "y"), Path: "a/y"},
	}
	require.NoError(t, j.PutFiles(files))
	require.NoError(t, j.PutBlocks([]agent.BlockRecord{{Seq: 2, Size: 5}, {Seq: 1, Size: 3, Parts: []agent.Part{{Path: "b/x", Length: 3}}}}))
	require.NoError(t, j.PutBlocks([]agent.BlockRecord{{Seq: 1, Size: 3, Hash: "h1", Locator: "h1+3+Asig@1", Expiry: 123, Stored: true}}))

	j = reopen(t, j, path)
	defer func() { j.Close() }()
	got, err := j.Meta()
	require.NoError(t, err)
	assert.Equal(t, meta.Options, got.Options)
	var order []string
	require.NoError(t, j.EachFile(ctx, func(f agent.FileRecord) error { order = append(order, f.Path); return nil }))
	assert.Equal(t, []string{"z", "a/y", "b/x"}, order, "manifest order: root files, then directories depth-first")
	var seqs []int64
	require.NoError(t, j.EachBlock(ctx, func(b agent.BlockRecord) error { seqs = append(seqs, b.Seq); return nil }))
	assert.Equal(t, []int64{1, 2}, seqs)
	b, err := j.Block(1)
	require.NoError(t, err)
	assert.True(t, b.Stored)
	loc, exp, ok := j.StoredHash("h1")
	assert.True(t, ok)
	assert.Equal(t, "h1+3+Asig@1", loc)
	assert.Equal(t, int64(123), exp)

	// ResetPlan keeps stored hashes; ForgetStored drops them.
	require.NoError(t, j.ResetPlan())
	_, err = j.Block(1)
	assert.Error(t, err)
	_, _, ok = j.StoredHash("h1")
	assert.True(t, ok)
	require.NoError(t, j.ForgetStored())
	_, _, ok = j.StoredHash("h1")
	assert.False(t, ok)
}

func TestJournal_lockedByAnotherOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := Open(path, 0)
	require.NoError(t, err)
	defer j.Close()
	_, err = Open(path, 50*time.Millisecond)
	assert.ErrorIs(t, err, ErrLocked)
}
