package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
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
	assert.Equal(t, []agent.Part{{Path: "b/x", Length: 3}}, b.Parts, "storing a block without parts keeps the planned ones")
	require.NoError(t, j.EachBlock(ctx, func(b agent.BlockRecord) error {
		assert.Nil(t, b.Parts, "EachBlock does not decode parts")
		return nil
	}))
	loc, exp, ok := j.StoredHash("h1")
	assert.True(t, ok)
	assert.Equal(t, "h1+3+Asig@1", loc)
	assert.Equal(t, int64(123), exp)

	f, ok, err := j.File(agent.FileKey("b", "x"))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "b/x", f.Path)
	assert.Equal(t, agent.FileKey("b", "x"), f.Key)
	_, ok, err = j.File(agent.FileKey("b", "nope"))
	require.NoError(t, err)
	assert.False(t, ok)

	n, err := j.NextSeq()
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)

	// DeleteBlocks keeps stored hashes; ForgetHashes drops them.
	require.NoError(t, j.DeleteBlocks([]int64{1}))
	_, err = j.Block(1)
	assert.Error(t, err)
	require.NoError(t, j.PutBlocks([]agent.BlockRecord{{Seq: 1, Size: 3}}))
	b, err = j.Block(1)
	require.NoError(t, err)
	assert.Empty(t, b.Parts, "DeleteBlocks removed the parts too")
	require.NoError(t, j.DeleteBlocks([]int64{1}))
	_, _, ok = j.StoredHash("h1")
	assert.True(t, ok)
	require.NoError(t, j.ForgetHashes())
	_, _, ok = j.StoredHash("h1")
	assert.False(t, ok)
	_, err = j.Block(2)
	assert.NoError(t, err, "ForgetHashes leaves block records alone")
}

// PruneFiles removes exactly the records of other generations, including
// neighbours deleted in a row (the cursor must not skip any).
func TestJournal_PruneFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := Open(path, 0)
	require.NoError(t, err)
	var recs []agent.FileRecord
	want := []string{}
	for i := 0; i < 5000; i++ {
		gen := int64(7)
		if i%3 != 0 {
			gen = 6
		}
		p := fmt.Sprintf("d%d/f%05d", i%4, i)
		recs = append(recs, agent.FileRecord{Key: agent.FileKey(fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%05d", i)), Path: p, Gen: gen})
		if gen == 7 {
			want = append(want, p)
		}
	}
	require.NoError(t, j.PutFiles(recs))
	n, err := j.PruneFiles(7)
	require.NoError(t, err)
	assert.Equal(t, int64(5000-len(want)), n)
	j = reopen(t, j, path)
	defer j.Close()
	var got []string
	require.NoError(t, j.EachFile(ctx, func(f agent.FileRecord) error { got = append(got, f.Path); return nil }))
	sort.Strings(got)
	sort.Strings(want)
	assert.Equal(t, want, got)
}

func TestJournal_lockedByAnotherOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := Open(path, 0)
	require.NoError(t, err)
	defer j.Close()
	_, err = Open(path, 50*time.Millisecond)
	assert.ErrorIs(t, err, ErrLocked)
}
