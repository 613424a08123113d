package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

type padded struct {
	N   int    `json:"n"`
	Pad string `json:"pad,omitempty"`
}

func uuidN(i int) string { return fmt.Sprintf("zzzzz-57u5n-%015d", i) }

// Each reads in pages: every object once, in UUID order, however many
// pages it takes (objects bigger than a page included); raw stays valid
// after Each moved on; returning false stops it on any page.
func TestBoltStore_Each_pages(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, pad     int
		stopAfter  int // 0: never
		wantCalled int
	}{
		{"few", 3, 0, 0, 3},
		{"exactly one page", pageObjects, 0, 0, pageObjects},
		{"many pages", 2*pageObjects + 3, 0, 0, 2*pageObjects + 3},
		{"objects bigger than a page", 3, pageBytes + 1, 0, 3},
		{"stop at the end of a page", 2*pageObjects + 3, 0, pageObjects, pageObjects},
		{"stop at the start of a page", 2*pageObjects + 3, 0, pageObjects + 1, pageObjects + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := openBoltStore(filepath.Join(t.TempDir(), "api.db"))
			require.NoError(t, err)
			defer st.Close()
			pad := strings.Repeat("x", tc.pad)
			// One transaction rather than one commit per object.
			require.NoError(t, st.db.Update(func(tx *bolt.Tx) error {
				for i := 0; i < tc.n; i++ {
					b, err := json.Marshal(padded{N: i, Pad: pad})
					if err != nil {
						return err
					}
					if err := tx.Bucket([]byte("logs")).Put([]byte(uuidN(i)), b); err != nil {
						return err
					}
				}
				return nil
			}))
			var uuids []string
			var raws [][]byte
			require.NoError(t, st.Each("logs", func(uuid string, raw []byte) bool {
				uuids, raws = append(uuids, uuid), append(raws, raw)
				return len(uuids) != tc.stopAfter
			}))
			require.Len(t, uuids, tc.wantCalled)
			for i, u := range uuids {
				require.Equal(t, uuidN(i), u)
				var got padded
				require.NoError(t, json.Unmarshal(raws[i], &got))
				assert.Equal(t, padded{N: i, Pad: pad}, got)
			}
		})
	}
}

// Each's callback may use the store, writes included, even when a write
// must remap the file (bbolt deadlocks on that inside a read transaction).
func TestBoltStore_Each_callbackUsesStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.db")
	st, err := openBoltStore(path)
	require.NoError(t, err)
	wedged := false
	defer func() {
		if !wedged { // closing a wedged store would hang too
			st.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		require.NoError(t, st.Put("users", uuidN(i), padded{N: i}))
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	big := strings.Repeat("x", int(2*fi.Size())) // more than the file maps now
	done := make(chan error, 1)
	go func() {
		n := 0
		var cbErr error
		err := st.Each("users", func(uuid string, _ []byte) bool {
			var u padded
			if cbErr = st.Get("users", uuid, &u); cbErr != nil {
				return false
			}
			cbErr = st.Put("logs", uuidN(n), padded{N: n, Pad: big})
			n++
			return cbErr == nil
		})
		done <- errors.Join(err, cbErr)
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(deadlockWait):
		wedged = true
		dumpGoroutines(t)
		require.FailNow(t, "a write from Each's callback deadlocked")
	}
	after, err := os.Stat(path)
	require.NoError(t, err)
	assert.Greater(t, after.Size(), 3*2*fi.Size(), "the writes grew the file")
}
