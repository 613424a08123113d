package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// Issue 13.6: several paths and single files go into one collection with
// arv-put's layout (PROTOCOL 11.1): "a" (a directory without a trailing
// slash) as the directory a/, "b/" (with one) as its contents at the
// root, a file at the root under its name.
func TestUpload_severalInputs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	base := t.TempDir()
	wa, want := treeWriter(t, filepath.Join(base, "a"), 41)
	wa("x.bin", testBlockSize+10)
	wa("sub/y.txt", 300)
	wb, wantB := treeWriter(t, filepath.Join(base, "b"), 42)
	wb("y.txt", 200)
	wb("deep/z.txt", 50)
	wc, wantC := treeWriter(t, base, 43)
	wc("c.txt", 1000)
	got := map[string][]byte{}
	for k, v := range want {
		got["a/"+k] = v
	}
	for k, v := range wantB {
		got[k] = v
	}
	got["c.txt"] = wantC["c.txt"]

	ins, err := agent.ResolveInputs([]string{filepath.Join(base, "a"), filepath.Join(base, "b") + "/", filepath.Join(base, "c.txt")})
	require.NoError(t, err)
	run := func() agent.JobMeta {
		j, err := store.Open(filepath.Join(t.TempDir(), "job.db"), 0)
		require.NoError(t, err)
		t.Cleanup(func() { j.Close() })
		require.NoError(t, j.SetMeta(agent.JobMeta{Job: "j", Inputs: ins, Options: agent.Options{Name: "inputs"}, Created: time.Now()}))
		meta, err := uploader(t, j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
		require.NoError(t, err)
		return meta
	}
	meta := run()
	assertSameFiles(t, got, readBack(t, ctx, c, keep, meta.CollectionUUID))
	assert.Equal(t, meta.PDH, run().PDH, "the same inputs make the same collection")
}

// Two inputs that would put something at the same place are refused,
// naming both, before anything is planned.
func TestResolveInputs_collision(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(base, "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "b", "c.txt"), []byte("1"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(base, "c.txt"), []byte("2"), 0o644))
	_, err := agent.ResolveInputs([]string{filepath.Join(base, "b") + "/", filepath.Join(base, "c.txt")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(base, "b", "c.txt"))
	assert.Contains(t, err.Error(), `"c.txt"`)

	_, err = agent.ResolveInputs([]string{filepath.Join(base, "b"), filepath.Join(base, "c.txt")})
	require.NoError(t, err, "b as a directory and c.txt do not collide")
	_, err = agent.ResolveInputs([]string{filepath.Join(base, "missing")})
	assert.ErrorIs(t, err, os.ErrNotExist)
}
