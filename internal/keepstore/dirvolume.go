package keepstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// tmpPrefix starts the name of every temporary file DirVolume writes; OpenDir
// removes stray ones. A block name is 32 hex digits, so the two never clash.
const tmpPrefix = "tmp-"

// DirVolume stores each block as the file <root>/<hash[0:3]>/<hash>.
// One directory must be served by one process at a time: OpenDir removes
// temporary files it finds, which would break another writer's Put.
type DirVolume struct {
	root string
	// writeData writes the block to the temporary file; tests replace it to
	// inject faults (a disk that fills up half-way).
	writeData func(f *os.File, data []byte) error
	// openDirect creates a temporary file with O_DIRECT (createDirect);
	// tests replace it to act as a filesystem that refuses O_DIRECT.
	openDirect func(name string) (*os.File, error)
	// noDirect is set once the filesystem refused O_DIRECT; later blocks
	// are written buffered without trying again.
	noDirect atomic.Bool
}

var _ StreamVolume = (*DirVolume)(nil)

// ErrNoVolumeDir means the volume directory does not exist. OpenDir never
// creates it: a missing directory is most often a disk that is not mounted,
// and blocks written there would fill the root filesystem.
var ErrNoVolumeDir = errors.New("volume directory does not exist")

// ErrNotMountPoint means Options.RequireMount is set and the volume
// directory is not a mount point (its disk is not mounted).
var ErrNotMountPoint = errors.New("volume directory is not a mount point")

// OpenDir opens an existing directory volume and removes any temporary
// files a crash left behind. A missing directory is ErrNoVolumeDir.
func OpenDir(root string) (*DirVolume, error) {
	if root == "" {
		return nil, errors.New("open directory volume: no directory given")
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open directory volume %s: %w; create it (or mount its disk there) and start again", root, ErrNoVolumeDir)
	case err != nil:
		return nil, fmt.Errorf("open directory volume: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open directory volume %s: not a directory", root)
	}
	v := &DirVolume{root: root, writeData: writeAll, openDirect: createDirect}
	if err := v.removeTemps(); err != nil {
		return nil, err
	}
	return v, nil
}

func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// Root returns the volume directory.
func (v *DirVolume) Root() string { return v.root }

func (v *DirVolume) removeTemps() error {
	subs, err := os.ReadDir(v.root)
	if err != nil {
		return fmt.Errorf("read volume directory: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() || !isHexPrefix(sub.Name(), 3) {
			continue
		}
		dir := filepath.Join(v.root, sub.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("read volume directory: %w", err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove stray temporary file: %w", err)
				}
			}
		}
	}
	return nil
}

func (v *DirVolume) path(hash string) (string, error) {
	if !arvados.IsHash(hash) {
		return "", fmt.Errorf("%w: %q", arvados.ErrInvalidLocator, hash)
	}
	return filepath.Join(v.root, hash[:3], hash), nil
}

// Put stores data through Create, so that blocks given whole and blocks
// streamed take the same durable path (see Create).
func (v *DirVolume) Put(ctx context.Context, hash string, data []byte) error {
	w, err := v.Create(ctx, hash)
	if err != nil {
		return err
	}
	if _, err := w.ReadFrom(bytes.NewReader(data)); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// Create opens a temporary file "tmp-<hash>-<random>" in the block's
// directory (creating the directory, and then syncing the volume root, if
// needed), with O_DIRECT where the filesystem allows it.
func (v *DirVolume) Create(ctx context.Context, hash string) (BlockWriter, error) {
	final, err := v.path(hash)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := filepath.Dir(final)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create block directory: %w", err)
		}
		if err := syncDir(v.root); err != nil {
			return nil, err
		}
	}
	f, direct, err := v.createTemp(dir, hash)
	if err != nil {
		return nil, err
	}
	return &dirWriter{v: v, hash: hash, final: final, f: f, direct: direct}, nil
}

// createTemp creates a new temporary file for hash in dir, with O_DIRECT
// unless the filesystem refused it before, else buffered.
func (v *DirVolume) createTemp(dir, hash string) (f *os.File, direct bool, err error) {
	for range 100 {
		name := filepath.Join(dir, tmpPrefix+hash+"-"+strconv.FormatUint(rand.Uint64(), 36))
		if !v.noDirect.Load() {
			f, err = v.openDirect(name)
			if err == nil {
				return f, true, nil
			}
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			// Some filesystems create the file and then refuse
			// O_DIRECT (EINVAL): open that name buffered, without
			// O_EXCL. The name is random, so it is this Put's.
			if errors.Is(err, syscall.EINVAL) {
				v.noDirect.Store(true)
			}
			f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		} else {
			f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
		if err == nil {
			return f, false, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("create temporary file: %w", err)
		}
	}
	return nil, false, fmt.Errorf("create temporary file in %s: %w", dir, err)
}

// Write windows: a block is read into up to writeDepth windows of
// writeWindow bytes; while the reader fills one, a writer goroutine writes
// the others. 4 x 1 MiB per block being written (see doc.go for the
// figures that chose them).
const (
	writeWindow = 1 << 20
	writeDepth  = 4
)

// windows is the process's free list of write windows: page-aligned
// buffers outside the Go heap, kept for reuse, so there are at most
// writeDepth times the peak number of concurrent block writes.
var windows struct {
	mu   sync.Mutex
	free [][]byte
}

func getWindow() []byte {
	windows.mu.Lock()
	defer windows.mu.Unlock()
	if n := len(windows.free); n > 0 {
		b := windows.free[n-1]
		windows.free = windows.free[:n-1]
		return b
	}
	return alignedBuffer(writeWindow)
}

func putWindows(bs [][]byte) {
	windows.mu.Lock()
	defer windows.mu.Unlock()
	for _, b := range bs {
		windows.free = append(windows.free, b[:writeWindow])
	}
}

// dirWriter is a DirVolume block being written to its temporary file.
type dirWriter struct {
	v           *DirVolume
	hash, final string
	f           *os.File
	direct      bool  // f is open with O_DIRECT; only the write goroutine changes it
	off         int64 // bytes written so far; only the write goroutine changes it
	done        bool  // Commit or Abort was called
}

// ReadFrom reads r window by window; a writer goroutine writes each full
// window while the next is read, so the disk works while the network
// delivers. Every byte is read once from r into a window and written from
// there: no copy in between (the caller hashes in its Read, on the same
// window). With O_DIRECT the write goes from the window to the device.
func (w *dirWriter) ReadFrom(r io.Reader) (int64, error) {
	var taken [][]byte
	defer func() { putWindows(taken) }()
	free := make(chan []byte, writeDepth)
	full := make(chan []byte, writeDepth)
	failed := make(chan struct{})
	written := make(chan struct{})
	var werr error
	go func() {
		defer close(written)
		for b := range full {
			if werr == nil {
				if werr = w.write(b); werr != nil {
					close(failed)
				}
			}
			free <- b
		}
	}()

	var n int64
	var rerr error
read:
	for {
		select {
		case <-failed:
			break read
		default:
		}
		var b []byte
		select {
		case b = <-free:
		default:
			if len(taken) < writeDepth {
				b = getWindow()
				taken = append(taken, b)
				break
			}
			select {
			case b = <-free:
			case <-failed:
				break read
			}
		}
		m, err := fill(r, b[:cap(b)])
		n += int64(m)
		if m > 0 {
			full <- b[:m]
		} else {
			free <- b
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	close(full)
	<-written
	if werr != nil {
		return n, werr
	}
	return n, rerr
}

// fill reads r until b is full or r fails (io.EOF included).
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// write writes one window. Only the last window of a block can be shorter
// than writeWindow; when its length is not a multiple of directAlign it is
// written through the page cache (O_DIRECT off), and Commit's fdatasync
// flushes it.
func (w *dirWriter) write(b []byte) error {
	if w.direct && len(b)%directAlign != 0 {
		if err := clearDirect(w.f); err != nil {
			return fmt.Errorf("write block %s: %w", w.hash, err)
		}
		w.direct = false
	}
	err := w.v.writeData(w.f, b)
	if err != nil && w.direct && errors.Is(err, syscall.EINVAL) {
		err = w.finishBuffered(b)
	}
	if err != nil {
		return fmt.Errorf("write block %s: %w", w.hash, err)
	}
	w.off += int64(len(b))
	return nil
}

// finishBuffered writes the rest of window b through the page cache after
// an O_DIRECT write of it failed with EINVAL. A short O_DIRECT write (the
// disk filling up) leaves the file offset unaligned and the retry of the
// rest fails with EINVAL; written buffered, the rest fails with the real
// cause (ENOSPC: 507, not 503) or succeeds.
func (w *dirWriter) finishBuffered(b []byte) error {
	pos, err := w.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	done := pos - w.off
	if done < 0 || done > int64(len(b)) {
		return fmt.Errorf("file offset %d outside the window at %d", pos, w.off)
	}
	if err := clearDirect(w.f); err != nil {
		return err
	}
	w.direct = false
	return w.v.writeData(w.f, b[done:])
}

// Commit fdatasyncs the temporary file (its data and the size needed to
// read it back), renames it to the final name and fsyncs the directory.
// An error before the rename removes the temporary file.
func (w *dirWriter) Commit() error {
	if w.done {
		return fmt.Errorf("commit block %s: already finished", w.hash)
	}
	w.done = true
	tmp := w.f.Name()
	ok := false
	defer func() {
		if !ok {
			w.f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("sync block %s: %w", w.hash, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close block %s: %w", w.hash, err)
	}
	if err := os.Rename(tmp, w.final); err != nil {
		return fmt.Errorf("rename block %s: %w", w.hash, err)
	}
	ok = true
	return syncDir(filepath.Dir(w.final))
}

// Abort closes and removes the temporary file.
func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove temporary file: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get opens the block file.
func (v *DirVolume) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	p, err := v.path(hash)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open block %s: %w", hash, err)
	}
	return f, nil
}

// Head stats the block file.
func (v *DirVolume) Head(ctx context.Context, hash string) (BlockInfo, error) {
	p, err := v.path(hash)
	if err != nil {
		return BlockInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return BlockInfo{}, fmt.Errorf("head %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return BlockInfo{}, fmt.Errorf("stat block %s: %w", hash, err)
	}
	return BlockInfo{Hash: hash, Size: fi.Size(), Mtime: fi.ModTime()}, nil
}

// Touch sets the block file's mtime to now and syncs its directory: a PUT
// that finds the block already stored answers 200 after Touch, and the
// rename that stored it may be another PUT's, not yet synced.
func (v *DirVolume) Touch(ctx context.Context, hash string) error {
	p, err := v.path(hash)
	if err != nil {
		return err
	}
	now := time.Now()
	err = os.Chtimes(p, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("touch %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("touch block %s: %w", hash, err)
	}
	return syncDir(filepath.Dir(p))
}

// Index walks the block directories in name order.
func (v *DirVolume) Index(ctx context.Context, prefix string, fn func(BlockInfo) error) error {
	subs, err := os.ReadDir(v.root)
	if err != nil {
		return fmt.Errorf("read volume directory: %w", err)
	}
	for _, sub := range subs {
		name := sub.Name()
		if !sub.IsDir() || !isHexPrefix(name, 3) || !prefixesMatch(name, prefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(v.root, name))
		if err != nil {
			return fmt.Errorf("read block directory: %w", err)
		}
		for _, e := range ents {
			h := e.Name()
			if !arvados.IsHash(h) || !strings.HasPrefix(h, prefix) || e.IsDir() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since ReadDir
			}
			if err != nil {
				return fmt.Errorf("stat block %s: %w", h, err)
			}
			if err := fn(BlockInfo{Hash: h, Size: fi.Size(), Mtime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// prefixesMatch reports whether one of a and b is a prefix of the other.
func prefixesMatch(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return strings.HasPrefix(b, a)
}

func isHexPrefix(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
