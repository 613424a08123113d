//go:build unix

package keepstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// isMountPoint reports whether the absolute, symlink-free path dir is a
// mount point: the root, a directory on another device than its parent, or
// one listed in /proc/self/mountinfo (which also knows bind mounts and
// subvolumes on the parent's device).
func isMountPoint(dir string) (bool, error) {
	if dir == "/" {
		return true, nil
	}
	dev := func(p string) (uint64, error) {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, fmt.Errorf("stat %s: no device number", p)
		}
		return uint64(st.Dev), nil
	}
	d, err := dev(dir)
	if err != nil {
		return false, err
	}
	parent, err := dev(filepath.Dir(dir))
	if err != nil {
		return false, err
	}
	if d != parent {
		return true, nil
	}
	return slices.Contains(mountPoints(readMountinfo()), dir), nil
}
