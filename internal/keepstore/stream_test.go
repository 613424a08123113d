package keepstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests below cover what streaming a PUT body to disk (instead of
// buffering it first) could break: nothing may stay behind after a failed
// PUT, a stored block is never touched by a bad one, and concurrent writers
// of one block all succeed with a whole file.

func TestServer_Put_mismatchLeavesNothing(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := randomBlock(20, 3<<20+5) // several windows reach the disk before the md5 is known
	other := arvados.HashOf([]byte("something else"))
	resp, body := ts.do(t, http.MethodPut, "/"+other, data)
	assert.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, body)
	assert.Equal(t, "content hash "+arvados.HashOf(data)+" did not match specified locator "+other+"\n", body)
	assert.Empty(t, listFiles(t, ts.Dir), "neither the block nor a temporary file")
	assert.Zero(t, ts.BuffersInUse())
}

func TestServer_Put_disconnectMidBodyLeavesNothing(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := randomBlock(21, 8<<20)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	require.NoError(t, err)
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", arvados.HashOf(data), len(data))
	_, err = conn.Write(data[:3<<20+100])
	require.NoError(t, err)
	// Wait until the server has written some of it, then go away.
	require.Eventually(t, func() bool { return len(listFiles(t, ts.Dir)) == 1 }, 10*time.Second, time.Millisecond)
	require.Contains(t, listFiles(t, ts.Dir)[0], tmpPrefix)
	require.NoError(t, conn.Close())

	require.Eventually(t, func() bool { return strings.Contains(ts.Logs.String(), `"method":"PUT"`) }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, listFiles(t, ts.Dir))
	assert.Zero(t, ts.BuffersInUse())
}

func TestServer_Put_existingBlockWrongBody(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := randomBlock(22, 2<<20+3)
	hash := arvados.HashOf(data)
	ts.put(t, data)
	p := filepath.Join(ts.Dir, hash[:3], hash)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(p, old, old))

	for name, body := range map[string][]byte{
		"one byte changed": append(append([]byte{}, data[:len(data)-1]...), data[len(data)-1]^1),
		"shorter":          data[:len(data)/2],
		"longer":           append(append([]byte{}, data...), 'x'),
	} {
		t.Run(name, func(t *testing.T) {
			resp, msg := ts.do(t, http.MethodPut, "/"+hash, body)
			assert.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, msg)
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "stored block intact")
			fi, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, old, fi.ModTime(), "a failed PUT does not touch the block")
			assert.Equal(t, []string{filepath.Join(hash[:3], hash)}, listFiles(t, ts.Dir))
		})
	}
}

func TestServer_Put_concurrentSameBlockUnaligned(t *testing.T) {
	ts := newTestServer(t, Options{MaxBuffers: 6})
	data := randomBlock(23, 9<<20+123) // a tail that O_DIRECT cannot write
	hash := arvados.HashOf(data)
	var wg sync.WaitGroup
	res := make([]string, 6)
	for i := range res {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPut, ts.URL+"/"+hash, bytes.NewReader(data))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				res[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res[i] = fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
		})
	}
	wg.Wait()
	for _, r := range res {
		assert.Equal(t, "200 "+arvados.LocatorFor(data), r)
	}
	assert.Equal(t, []string{filepath.Join(hash[:3], hash)}, listFiles(t, ts.Dir))
	got, err := os.ReadFile(filepath.Join(ts.Dir, hash[:3], hash))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "the stored file is whole")
	assert.Zero(t, ts.BuffersInUse())
}

func TestServer_Put_diskFullMidBody(t *testing.T) {
	dir := t.TempDir()
	dv, err := OpenDir(dir)
	require.NoError(t, err)
	var written atomic.Int64
	dv.writeData = func(f *os.File, data []byte) error {
		if written.Add(int64(len(data))) > 2<<20 {
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		_, err := f.Write(data)
		return err
	}
	ts := newTestServer(t, Options{Volume: dv})
	data := randomBlock(24, 6<<20)
	resp, body := ts.do(t, http.MethodPut, "/"+arvados.HashOf(data), data)
	assert.Equal(t, http.StatusInsufficientStorage, resp.StatusCode, "the client reads the answer, not a reset")
	assert.Equal(t, "insufficient storage\n", body)
	assert.Empty(t, listFiles(t, dir))
	assert.Zero(t, ts.BuffersInUse())
}

func TestServer_Put_tooLargeChunkedLeavesNothing(t *testing.T) {
	ts := newTestServer(t, Options{})
	src := &countingSource{limit: arvados.BlockSize + 1}
	req, err := http.NewRequest(http.MethodPut, ts.URL+"/"+arvados.EmptyHash, io.NopCloser(src))
	require.NoError(t, err)
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(b))
	}
	require.Eventually(t, func() bool { return strings.Contains(ts.Logs.String(), `"status":413`) }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, listFiles(t, ts.Dir))
}

func TestDirVolume_Put_sizesAroundAlignment(t *testing.T) {
	v, err := OpenDir(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	for i, size := range []int{1, directAlign - 1, directAlign, directAlign + 1, writeWindow - 1, writeWindow, writeWindow + 1, writeDepth*writeWindow + directAlign + 7} {
		data := randomBlock(int64(30+i), size)
		hash := arvados.HashOf(data)
		require.NoError(t, v.Put(ctx, hash, data), "size %d", size)
		rc, err := v.Get(ctx, hash)
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		rc.Close()
		require.NoError(t, err)
		assert.True(t, bytes.Equal(data, got), "size %d read back equal", size)
	}
}

func TestDirVolume_Create_abortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenDir(dir)
	require.NoError(t, err)
	data := randomBlock(40, 3<<20)
	hash := arvados.HashOf(data)
	w, err := v.Create(context.Background(), hash)
	require.NoError(t, err)
	n, err := w.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	assert.EqualValues(t, len(data), n)
	require.Len(t, listFiles(t, dir), 1)
	require.NoError(t, w.Abort())
	assert.Empty(t, listFiles(t, dir))
	assert.Error(t, w.Commit(), "commit after abort")
	assert.Empty(t, listFiles(t, dir))
}

func TestWriteWindows_aligned(t *testing.T) {
	w := getWindow()
	defer putWindows([][]byte{w})
	assert.Len(t, w, writeWindow)
	assert.True(t, isAligned(w), "O_DIRECT needs page-aligned windows")
	assert.True(t, isAligned(heapAligned(writeWindow)), "the heap fallback too")
}

// A short O_DIRECT write (the disk filling up) leaves the file offset
// unaligned, and Go's retry of the rest fails with EINVAL. The writer then
// finishes the window through the page cache, which gives the real error
// (disk full: 507) or succeeds with every byte in place.
func TestDirVolume_Put_shortDirectWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		rest error // what writing the rest of the window returns
	}{
		{"then disk full", syscall.ENOSPC},
		{"then room again", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			v, err := OpenDir(dir)
			require.NoError(t, err)
			data := randomBlock(41, 3<<20)
			hash := arvados.HashOf(data)
			w, err := v.Create(context.Background(), hash)
			require.NoError(t, err)
			require.True(t, w.(*dirWriter).direct, "the test directory takes O_DIRECT")
			calls := 0 // only the write goroutine calls writeData
			v.writeData = func(f *os.File, b []byte) error {
				calls++
				switch calls {
				case 2: // the disk takes 4 KiB of the second window
					if _, err := f.Write(b[:directAlign]); err != nil {
						return err
					}
					return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EINVAL}
				case 3:
					assert.Len(t, b, writeWindow-directAlign, "the rest of the window")
					if tc.rest != nil {
						return &os.PathError{Op: "write", Path: f.Name(), Err: tc.rest}
					}
				}
				_, err := f.Write(b)
				return err
			}
			_, err = w.ReadFrom(bytes.NewReader(data))
			if tc.rest != nil {
				require.Error(t, err)
				assert.True(t, IsFull(err), "%v", err)
				require.NoError(t, w.Abort())
				assert.Empty(t, listFiles(t, dir))
				return
			}
			require.NoError(t, err)
			require.NoError(t, w.Commit())
			got, err := os.ReadFile(filepath.Join(dir, hash[:3], hash))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "every byte in place")
		})
	}
}

// Some filesystems (tmpfs before Linux 6.6) create the file and then refuse
// O_DIRECT with EINVAL. The block is then written buffered in that same
// file, nothing stray is left, and O_DIRECT is not tried again.
func TestDirVolume_Put_filesystemWithoutDirect(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenDir(dir)
	require.NoError(t, err)
	var tries atomic.Int32
	v.openDirect = func(name string) (*os.File, error) {
		tries.Add(1)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	ctx := context.Background()
	var want []string
	for i, size := range []int{3<<20 + 5, 10} {
		data := randomBlock(int64(50+i), size)
		hash := arvados.HashOf(data)
		require.NoError(t, v.Put(ctx, hash, data))
		got, err := os.ReadFile(filepath.Join(dir, hash[:3], hash))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(data, got), "size %d", size)
		want = append(want, filepath.Join(hash[:3], hash))
	}
	assert.ElementsMatch(t, want, listFiles(t, dir), "no stray temporary file")
	assert.EqualValues(t, 1, tries.Load(), "O_DIRECT is tried once")
}
