package keepstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
}

var _ Volume = (*DirVolume)(nil)

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
	v := &DirVolume{root: root, writeData: writeAll}
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

// Put writes data to a temporary file in the block's directory, fsyncs it,
// renames it over the final name and fsyncs the directory.
func (v *DirVolume) Put(ctx context.Context, hash string, data []byte) error {
	final, err := v.path(hash)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create block directory: %w", err)
		}
		if err := syncDir(v.root); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(dir, tmpPrefix+hash+"-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := v.writeData(f, data); err != nil {
		return fmt.Errorf("write block %s: %w", hash, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync block %s: %w", hash, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close block %s: %w", hash, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename block %s: %w", hash, err)
	}
	ok = true
	return syncDir(dir)
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

// Touch sets the block file's mtime to now.
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
	return nil
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
