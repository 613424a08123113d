package keepstore

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testVolume is the conformance suite every Volume implementation runs.
func testVolume(t *testing.T, newVolume func(t *testing.T) Volume) {
	ctx := context.Background()
	block := func(seed int64, size int) ([]byte, string) {
		b := make([]byte, size)
		rand.New(rand.NewSource(seed)).Read(b)
		return b, arvados.HashOf(b)
	}

	t.Run("put then get and head", func(t *testing.T) {
		v := newVolume(t)
		data, hash := block(1, 100000)
		before := time.Now().Add(-2 * time.Second)
		require.NoError(t, v.Put(ctx, hash, data))
		rc, err := v.Get(ctx, hash)
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		require.NoError(t, rc.Close())
		require.NoError(t, err)
		assert.Equal(t, data, got)
		info, err := v.Head(ctx, hash)
		require.NoError(t, err)
		assert.Equal(t, int64(len(data)), info.Size)
		assert.Equal(t, hash, info.Hash)
		assert.True(t, info.Mtime.After(before), "mtime %s", info.Mtime)
	})

	t.Run("empty block", func(t *testing.T) {
		v := newVolume(t)
		require.NoError(t, v.Put(ctx, arvados.EmptyHash, nil))
		info, err := v.Head(ctx, arvados.EmptyHash)
		require.NoError(t, err)
		assert.Zero(t, info.Size)
	})

	t.Run("missing block", func(t *testing.T) {
		v := newVolume(t)
		_, hash := block(2, 10)
		_, err := v.Get(ctx, hash)
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = v.Head(ctx, hash)
		assert.ErrorIs(t, err, ErrNotFound)
		assert.ErrorIs(t, v.Touch(ctx, hash), ErrNotFound)
	})

	t.Run("touch moves mtime forward", func(t *testing.T) {
		v := newVolume(t)
		data, hash := block(3, 10)
		require.NoError(t, v.Put(ctx, hash, data))
		if dv, ok := v.(*DirVolume); ok { // age the block so that Touch visibly moves it
			old := time.Now().Add(-time.Hour)
			require.NoError(t, os.Chtimes(filepath.Join(dv.Root(), hash[:3], hash), old, old))
		}
		before, err := v.Head(ctx, hash)
		require.NoError(t, err)
		require.NoError(t, v.Touch(ctx, hash))
		after, err := v.Head(ctx, hash)
		require.NoError(t, err)
		assert.True(t, after.Mtime.After(before.Mtime), "before %s after %s", before.Mtime, after.Mtime)
	})

	t.Run("index by prefix in hash order", func(t *testing.T) {
		v := newVolume(t)
		var hashes []string
		for i := range 40 {
			data, hash := block(int64(100+i), 10+i)
			require.NoError(t, v.Put(ctx, hash, data))
			hashes = append(hashes, hash)
		}
		for _, prefix := range []string{"", hashes[0][:1], hashes[0][:3], hashes[0][:5], hashes[0], "fffffffff"} {
			var got []string
			require.NoError(t, v.Index(ctx, prefix, func(b BlockInfo) error {
				got = append(got, b.Hash)
				return nil
			}))
			var want []string
			for _, h := range hashes {
				if len(h) >= len(prefix) && h[:len(prefix)] == prefix {
					want = append(want, h)
				}
			}
			assert.ElementsMatch(t, want, got, "prefix %q", prefix)
			assert.IsNonDecreasing(t, got, "prefix %q", prefix)
		}
		stop := errors.New("stop")
		n := 0
		err := v.Index(ctx, "", func(BlockInfo) error { n++; return stop })
		assert.ErrorIs(t, err, stop)
		assert.Equal(t, 1, n)
	})

	t.Run("concurrent puts of one block", func(t *testing.T) {
		v := newVolume(t)
		data, hash := block(4, 1<<20)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = v.Put(ctx, hash, data) })
		}
		wg.Wait()
		for _, err := range errs {
			assert.NoError(t, err)
		}
		rc, err := v.Get(ctx, hash)
		require.NoError(t, err)
		got, _ := io.ReadAll(rc)
		rc.Close()
		assert.Equal(t, hash, arvados.HashOf(got))
	})
}

func TestDirVolume_conformance(t *testing.T) {
	testVolume(t, func(t *testing.T) Volume {
		v, err := OpenDir(t.TempDir())
		require.NoError(t, err)
		return v
	})
}

// listFiles returns every regular file under root, relative to it.
func listFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	}))
	return out
}

func TestDirVolume_Put_diskFullLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenDir(dir)
	require.NoError(t, err)
	v.writeData = func(f *os.File, data []byte) error {
		// half the block reaches the disk, then it is full
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			return err
		}
		return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	data := []byte("some block data that will not fit")
	hash := arvados.HashOf(data)
	err = v.Put(context.Background(), hash, data)
	require.Error(t, err)
	assert.True(t, IsFull(err), "%v", err)
	assert.Empty(t, listFiles(t, dir))
	_, err = v.Head(context.Background(), hash)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestOpenDir_removesStrayTemps(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenDir(dir)
	require.NoError(t, err)
	data := []byte("kept")
	hash := arvados.HashOf(data)
	require.NoError(t, v.Put(context.Background(), hash, data))
	stray := filepath.Join(dir, hash[:3], tmpPrefix+hash+"-123")
	require.NoError(t, os.WriteFile(stray, []byte("partial"), 0o600))

	_, err = OpenDir(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(hash[:3], hash)}, listFiles(t, dir))
}

func TestDirVolume_Put_layout(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenDir(dir)
	require.NoError(t, err)
	data := []byte("foo")
	require.NoError(t, v.Put(context.Background(), arvados.HashOf(data), data))
	got, err := os.ReadFile(filepath.Join(dir, "acb", "acbd18db4cc2f85cedef654fccc4a4d8"))
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Error(t, v.Put(context.Background(), "ACBD18DB4CC2F85CEDEF654FCCC4A4D8", data), "upper-case hash")
}
