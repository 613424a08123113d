package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// deadlockWait bounds how long a test waits for something that must not
// depend on a blocked consumer; it only turns a deadlock into a failure
// instead of a hung suite, so it is generous for a loaded machine.
const deadlockWait = 60 * time.Second

func dumpGoroutines(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Logf("dump goroutines: %v", err)
	}
	t.Logf("goroutines:\n%s", b.String())
}

// fileRecords returns n file records, each at least pad bytes long in the
// journal (padded with x at the end of the path, which is not in the key).
func fileRecords(n int, gen int64, pad int) []agent.FileRecord {
	recs := make([]agent.FileRecord, n)
	for i := range recs {
		dir, name := fmt.Sprintf("d%02d", i%7), fmt.Sprintf("f%06d", i)
		recs[i] = agent.FileRecord{Key: agent.FileKey(dir, name), Path: dir + "/" + name + strings.Repeat("x", pad), Size: int64(i), Gen: gen,
			Ranges: []agent.Range{{Block: int64(i), Length: int64(i)}}}
	}
	return recs
}

func blockRecords(from, n int, locPad int) []agent.BlockRecord {
	recs := make([]agent.BlockRecord, n)
	for i := range recs {
		seq := int64(from + i)
		recs[i] = agent.BlockRecord{Seq: seq, Size: seq, Hash: fmt.Sprintf("%032x", seq),
			Locator: fmt.Sprintf("%032x+%d%s", seq, seq, strings.Repeat("x", locPad)), Stored: true,
			Parts: []agent.Part{{Path: "p", Length: seq}}}
	}
	return recs
}

// A consumer of EachFile or EachBlock that blocks (as one streaming a
// manifest into a slow HTTP request does) must not hold a read transaction
// meanwhile: a commit that grows the file past bbolt's mapping remaps it,
// which waits for every open read transaction. The commit here writes more
// than twice the file's size, so it must remap.
func TestJournal_Each_slowConsumerDoesNotBlockCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		each func(j *Journal, ctx context.Context, f func()) error
	}{
		{"EachFile", func(j *Journal, ctx context.Context, f func()) error {
			return j.EachFile(ctx, func(agent.FileRecord) error { f(); return nil })
		}},
		{"EachBlock", func(j *Journal, ctx context.Context, f func()) error {
			return j.EachBlock(ctx, func(agent.BlockRecord) error { f(); return nil })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "job.db")
			j, err := Open(path, 0)
			require.NoError(t, err)
			defer j.Close()
			require.NoError(t, j.PutFiles(fileRecords(3000, 1, 0)))
			require.NoError(t, j.PutBlocks(blockRecords(0, 3000, 0)))
			fi, err := os.Stat(path)
			require.NoError(t, err)

			blocked, release := make(chan struct{}), make(chan struct{})
			consumed := make(chan error, 1)
			go func() {
				first := true
				consumed <- tc.each(j, context.Background(), func() {
					if first {
						first = false
						close(blocked)
						<-release
					}
				})
			}()
			released := false
			defer func() {
				if !released {
					close(release)
				}
			}()
			select {
			case <-blocked:
			case err := <-consumed:
				require.FailNow(t, "the consumer returned before its first record", "%v", err)
			}

			// Blocks with long locators: more than twice the file's size in
			// one commit, past any mapping bbolt has made so far.
			const pad = 8 << 10
			n := int(2*fi.Size()/pad) + 64
			committed := make(chan error, 1)
			go func() { committed <- j.PutBlocks(blockRecords(10000, n, pad)) }()
			select {
			case err := <-committed:
				require.NoError(t, err)
			case <-time.After(deadlockWait):
				dumpGoroutines(t)
				require.FailNow(t, "a commit that remaps waited for a blocked EachFile/EachBlock consumer")
			}
			after, err := os.Stat(path)
			require.NoError(t, err)
			assert.Greater(t, after.Size(), 2*fi.Size(), "the commit grew the file past the old mapping")

			close(release)
			released = true
			assert.NoError(t, <-consumed)
		})
	}
}

// EachFile and EachBlock read in pages: every record is seen once, in key
// order, however many pages it takes, including records bigger than a
// page; writes between pages never make a key appear twice or out of
// order.
func TestJournal_Each_pages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, pad  int
		changes bool
	}{
		{"one page", 10, 0, false},
		{"exactly one page", pageRecords, 0, false},
		{"many pages", 2*pageRecords + 5, 0, false},
		{"records bigger than a page", 2, pageBytes + 1, false},
		{"writes between pages", 2*pageRecords + 5, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			j, err := Open(filepath.Join(t.TempDir(), "job.db"), 0)
			require.NoError(t, err)
			defer j.Close()
			files := fileRecords(tc.n, 1, tc.pad)
			require.NoError(t, j.PutFiles(files))
			require.NoError(t, j.PutBlocks(blockRecords(0, tc.n, tc.pad)))

			want := map[string]bool{}
			for _, f := range files {
				want[f.Key] = true
			}
			deleted := map[string]bool{}
			var keys []string
			require.NoError(t, j.EachFile(ctx, func(f agent.FileRecord) error {
				keys = append(keys, f.Key)
				assert.Equal(t, f.Key, agent.FileKey(f.Path[:3], strings.TrimRight(f.Path[4:], "x")), "a record whole, under its own key")
				assert.Len(t, f.Path, len("d00/f000000")+tc.pad+strings.Count(f.Key, "+"))
				if tc.changes && len(keys)%1000 == 1 {
					// Rewrite the record just seen, add one after it,
					// delete one ahead, as a concurrent writer might.
					changed := f
					changed.Size++
					added := f
					added.Key += "+"
					added.Path += "+"
					var ahead []agent.FileRecord
					for _, o := range files {
						if o.Key > f.Key && !deleted[o.Key] {
							ahead = append(ahead, o)
						}
					}
					require.NoError(t, j.PutFiles([]agent.FileRecord{changed, added}))
					if len(ahead) > 0 {
						victim := ahead[len(ahead)/2].Key
						deleted[victim] = true
						require.NoError(t, deleteFile(j, victim))
					}
				}
				return nil
			}))
			for i := 1; i < len(keys); i++ {
				require.Less(t, keys[i-1], keys[i], "keys strictly ascending (so none twice)")
			}
			seen := map[string]bool{}
			for _, k := range keys {
				seen[k] = true
			}
			for k := range want {
				if !deleted[k] {
					assert.True(t, seen[k], "record %q, never deleted, was seen", k)
				}
			}

			var seqs []int64
			require.NoError(t, j.EachBlock(ctx, func(b agent.BlockRecord) error {
				seqs = append(seqs, b.Seq)
				assert.Equal(t, b.Seq, b.Size)
				assert.Nil(t, b.Parts)
				return nil
			}))
			require.Len(t, seqs, tc.n)
			for i, s := range seqs {
				require.Equal(t, int64(i), s)
			}
		})
	}
}

func deleteFile(j *Journal, key string) error {
	return j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bFiles).Delete([]byte(key)) })
}

// A callback's error, or the context's, ends the iteration on any page.
func TestJournal_Each_stops(t *testing.T) {
	j, err := Open(filepath.Join(t.TempDir(), "job.db"), 0)
	require.NoError(t, err)
	defer j.Close()
	require.NoError(t, j.PutFiles(fileRecords(2*pageRecords+5, 1, 0)))
	errStop := errors.New("stop")
	for _, at := range []int{1, pageRecords, pageRecords + 1, 2*pageRecords + 5} {
		t.Run(fmt.Sprintf("error at %d", at), func(t *testing.T) {
			n := 0
			err := j.EachFile(context.Background(), func(agent.FileRecord) error {
				if n++; n == at {
					return errStop
				}
				return nil
			})
			assert.ErrorIs(t, err, errStop)
			assert.Equal(t, at, n)
		})
		t.Run(fmt.Sprintf("cancel at %d", at), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			err := j.EachFile(ctx, func(agent.FileRecord) error {
				if n++; n == at {
					cancel()
				}
				return nil
			})
			if at < 2*pageRecords+5 {
				assert.ErrorIs(t, err, context.Canceled)
			}
			assert.Equal(t, at, n)
		})
	}
}
