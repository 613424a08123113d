package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// fullJournal writes a closed journal with enough files, blocks and
// hashes that each bucket spans several pages.
func fullJournal(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := Open(path, 0)
	require.NoError(t, err)
	require.NoError(t, j.SetMeta(agent.JobMeta{Job: "j1", Dir: "/data", State: agent.StateRunning}))
	var files []agent.FileRecord
	var blocks []agent.BlockRecord
	for i := 0; i < 3000; i++ {
		dir, name := fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%05d.txt", i)
		p := dir + "/" + name
		files = append(files, agent.FileRecord{Key: agent.FileKey(dir, name), Path: p, Size: 100,
			Ranges: []agent.Range{{Block: int64(i / 10), BlockOffset: int64(i%10) * 100, Length: 100}}})
		if i%10 == 0 {
			blocks = append(blocks, agent.BlockRecord{Seq: int64(i / 10), Size: 1000})
		}
		blocks[len(blocks)-1].Parts = append(blocks[len(blocks)-1].Parts, agent.Part{Path: p, Length: 100, FileSize: 100})
	}
	require.NoError(t, j.PutFiles(files))
	require.NoError(t, j.PutBlocks(blocks))
	var stored []agent.BlockRecord
	for i := range blocks[:len(blocks)/2] {
		h := fmt.Sprintf("%032x", i)
		stored = append(stored, agent.BlockRecord{Seq: int64(i), Size: 1000, Hash: h, Locator: h + "+1000+Asig@1", Expiry: 1, Stored: true})
	}
	require.NoError(t, j.PutBlocks(stored))
	require.NoError(t, j.Close())
	return path
}

// useJournal does what a resume does with a journal: open it, check it,
// read everything. It returns the first error.
func useJournal(path string) error {
	ctx := context.Background()
	j, err := Open(path, 0)
	if err != nil {
		return err
	}
	defer j.Close()
	steps := []func() error{
		func() error { _, err := j.Meta(); return err },
		func() error { _, err := j.NextSeq(); return err },
		func() error { return j.EachFile(ctx, func(agent.FileRecord) error { return nil }) },
		func() error { _, _, err := j.File(agent.FileKey("d3", "f00003.txt")); return err },
		func() error { return j.EachBlock(ctx, func(agent.BlockRecord) error { return nil }) },
		func() error { _, err := j.Block(7); return err },
		func() error { j.StoredHash(fmt.Sprintf("%032x", 3)); return nil },
		func() error { return j.Check(ctx) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// withBolt changes the closed journal at path with bbolt itself.
func withBolt(t *testing.T, path string, f func(tx *bolt.Tx) error) {
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(f))
	require.NoError(t, db.Close())
}

// garbage overwrites n bytes at off with seeded random bytes.
func garbage(t *testing.T, path string, off, n int64) {
	buf := make([]byte, n)
	rand.New(rand.NewSource(off)).Read(buf)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// branchRoot returns the root page of the files bucket, a branch page.
func branchRoot(t *testing.T, path string) int64 {
	var root int64
	withBolt(t, path, func(tx *bolt.Tx) error {
		root = int64(tx.Bucket(bFiles).Root())
		info, err := tx.Page(int(root))
		require.NoError(t, err)
		require.Equal(t, "branch", info.Type, "the files bucket spans several pages")
		return nil
	})
	return root
}

func fileSize(t *testing.T, path string) int64 {
	info, err := os.Stat(path)
	require.NoError(t, err)
	return info.Size()
}

// Every kind of damage is an ErrDamaged from Open, a read or Check: never
// a panic, a crash on the memory map or a silently re-created journal.
func TestJournal_damaged(t *testing.T) {
	page := int64(os.Getpagesize())
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		// openOK: the cheap check at Open does not see this damage; the
		// reads or Check must.
		openOK bool
	}{
		{"zeroLength", func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 0)) }, false},
		{"garbagePages", func(t *testing.T, path string) {
			// Everything but the two meta pages, free list included.
			garbage(t, path, 2*page, fileSize(t, path)-2*page)
		}, false},
		{"garbageBranchPage", func(t *testing.T, path string) {
			root := branchRoot(t, path)
			garbage(t, path, root*page+16, page-16) // header intact: bbolt follows its garbage page ids
		}, true},
		{"pageIDOutsideTheFile", func(t *testing.T, path string) {
			// The first child of the files bucket's root branch page
			// (page header 16 bytes; element: pos, ksize uint32, pgid
			// uint64) points 4 GiB on, outside the memory map: reading it
			// faults, which only SetPanicOnFault makes recoverable.
			root := branchRoot(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			require.NoError(t, err)
			var id [8]byte
			binary.LittleEndian.PutUint64(id[:], 1<<20)
			_, err = f.WriteAt(id[:], root*page+16+8)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, true},
		{"halfTruncated", func(t *testing.T, path string) {
			// Half of bbolt's pages: the file may be longer than them.
			var used int64
			withBolt(t, path, func(tx *bolt.Tx) error { used = tx.Size(); return nil })
			require.NoError(t, os.Truncate(path, used/2))
		}, false},
		{"garbageMetaJSON", func(t *testing.T, path string) {
			withBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("job"), []byte(`{"job":"j1","dir":`)) })
		}, true},
		{"garbageFileRecord", func(t *testing.T, path string) {
			withBolt(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bFiles).Put([]byte(agent.FileKey("d5", "f00005.txt")), []byte("\x00\xffnot json"))
			})
		}, true},
		{"garbageBlockRecord", func(t *testing.T, path string) {
			withBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bBlocks).Put(seqKey(250), []byte(`{"seq":"x"}`)) })
		}, true},
		{"garbageHashRecord", func(t *testing.T, path string) {
			withBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bHashes).Put([]byte("zz"), []byte(`[1,`)) })
		}, true},
		{"missingBucket", func(t *testing.T, path string) {
			withBolt(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bParts) })
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := fullJournal(t)
			require.NoError(t, useJournal(path), "the journal is sound before the damage")
			tc.damage(t, path)
			size := fileSize(t, path)

			j, err := Open(path, 0)
			if tc.openOK {
				require.NoError(t, err, "Open checks only cheaply")
				require.NoError(t, j.Close())
			} else {
				require.ErrorIs(t, err, ErrDamaged)
			}
			err = useJournal(path)
			require.ErrorIs(t, err, ErrDamaged)
			var de *DamagedError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, path, de.Path)
			assert.Contains(t, err.Error(), path)
			assert.Equal(t, size, fileSize(t, path), "the damaged file is left as it is")
		})
	}
}

// Damage under an open journal (a run using it): the first call that
// meets it fails with ErrDamaged, and so does every later one, at once;
// Close returns. (bbolt left to itself keeps its writer lock after a
// panic in a rollback, and the next write or Close waits forever.)
func TestJournal_damagedWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := fullJournal(t)
	j, err := Open(path, 0)
	require.NoError(t, err)
	garbage(t, path, 2*int64(os.Getpagesize()), fileSize(t, path)-2*int64(os.Getpagesize()))

	done := make(chan struct{})
	go func() {
		defer close(done)
		write := func() error {
			return j.PutBlocks([]agent.BlockRecord{{Seq: 5, Size: 1000, Hash: "h", Locator: "h+1000", Stored: true}})
		}
		assert.ErrorIs(t, write(), ErrDamaged)
		assert.ErrorIs(t, write(), ErrDamaged)
		assert.ErrorIs(t, j.EachFile(ctx, func(agent.FileRecord) error { return nil }), ErrDamaged)
		assert.ErrorIs(t, j.SetMeta(agent.JobMeta{Job: "j1"}), ErrDamaged)
		assert.NoError(t, j.Close())
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the journal hangs after damage")
	}
	_, err = Open(path, 0)
	assert.ErrorIs(t, err, ErrDamaged, "and the lock is free again")
}

func TestStandardLibrary(t *testing.T) {
	for fn, want := range map[string]bool{
		"runtime.gopanic":                                                 true,
		"runtime.goPanicIndex":                                            true,
		"strings.Repeat":                                                  true,
		"encoding/binary.bigEndian.Uint64":                                true,
		"encoding/json.(*decodeState).object":                             true,
		"go.etcd.io/bbolt/internal/common.(*Page).FastCheck":              false,
		"github.com/arv-upload/arv-upload/agent.(*Uploader).upload.func1": false,
		"github.com/arv-upload/arv-upload/store.(*Journal).NextSeq.func1": false,
		"main.main": false,
	} {
		t.Run(fn, func(t *testing.T) { assert.Equal(t, want, standardLibrary(fn)) })
	}
}

// bbolt makes the file longer than its pages; cutting only that tail
// loses nothing, and the journal is not damaged.
func TestJournal_truncatedTailIsNotDamage(t *testing.T) {
	path := fullJournal(t)
	var used int64
	withBolt(t, path, func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	require.GreaterOrEqual(t, fileSize(t, path), used)
	require.NoError(t, os.Truncate(path, used))
	assert.NoError(t, useJournal(path))
}
