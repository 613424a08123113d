package agent_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// The walk stats a directory's entries in parallel; the plan (file
// records, blocks and their parts, the fingerprint) must be the one a
// walk of one stat at a time makes, for a tree of many directories with
// empty ones, excluded names, symlinks and files of every plan kind.
func TestPlan_parallelStatSamePlan(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	rnd := rand.New(rand.NewSource(3))
	for d := range 40 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d%7), fmt.Sprintf("e%02d", d))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for f := range rnd.Intn(30) {
			size := rnd.Intn(3 * testBlockSize / 2)
			if f%5 == 0 {
				size = rnd.Intn(100)
			}
			data := make([]byte, size)
			rnd.Read(data)
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), data, 0o644))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "skip.log"), []byte("x"), 0o644))
		require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))
		require.NoError(t, os.Symlink("f000", filepath.Join(dir, "link")))
	}
	// A directory wider than the window the walk stats ahead.
	wide := filepath.Join(src, "wide")
	require.NoError(t, os.Mkdir(wide, 0o755))
	for f := range 2500 {
		require.NoError(t, os.WriteFile(filepath.Join(wide, fmt.Sprintf("w%04d", f)), []byte{byte(f)}, 0o644))
	}
	plan := func(parallel int) (agent.JobMeta, []agent.FileRecord, []agent.BlockRecord) {
		jb := newJob(t, src, agent.Options{Excludes: []string{"*.log"}, FollowLinks: true})
		up, err := agent.New(agent.WithStatParallelism(agent.WithBlockSize(agent.Config{Journal: jb.j}, testBlockSize), parallel))
		require.NoError(t, err)
		meta, err := up.Plan(context.Background())
		require.NoError(t, err)
		var files []agent.FileRecord
		require.NoError(t, jb.j.EachFile(context.Background(), func(r agent.FileRecord) error {
			r.Gen = 0
			files = append(files, r)
			return nil
		}))
		var blocks []agent.BlockRecord
		require.NoError(t, jb.j.EachBlock(context.Background(), func(r agent.BlockRecord) error {
			r, err := jb.j.Block(r.Seq)
			blocks = append(blocks, r)
			return err
		}))
		return meta, files, blocks
	}
	m1, f1, b1 := plan(1)
	m8, f8, b8 := plan(8)
	require.Greater(t, len(f1), 2700)
	require.Greater(t, len(b1), 20)
	require.Equal(t, m1.PlanFingerprint, m8.PlanFingerprint)
	require.Equal(t, m1.FilesTotal, m8.FilesTotal)
	require.Equal(t, f1, f8)
	require.Equal(t, b1, b8)
}

// A small file replaced by a directory between the plan and the read
// (which reads it without an fstat first) has its block skipped as a
// changed file, not failed as unreadable.
func TestUpload_fileReplacedByDirectoryIsChanged(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("first"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "b"), []byte("second"), 0o644))
	jb := newJob(t, src, agent.Options{})
	keep := &discardKeep{}
	up, err := agent.New(agent.Config{Journal: jb.j, Keep: keep})
	require.NoError(t, err)
	_, err = up.Plan(context.Background())
	require.NoError(t, err)
	up.SetReadHook(func(p string) {
		if p == "b" {
			require.NoError(t, os.Remove(filepath.Join(src, "b")))
			require.NoError(t, os.Mkdir(filepath.Join(src, "b"), 0o755))
		}
	})
	err = up.UploadOnly(context.Background())
	require.ErrorIs(t, err, agent.ErrFileChanged)
	require.Contains(t, err.Error(), filepath.Join(src, "b"))
	require.Zero(t, keep.bytes.Load(), "the block holding a and b was not sent")
}
