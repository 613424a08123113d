//go:build linux

package keepstore

import (
	"os"
	"syscall"
)

// directAlign is the alignment O_DIRECT wants of buffer addresses, file
// offsets and lengths: the page size, which covers any logical block size.
const directAlign = 4096

// createDirect creates name (which must not exist) for writing with
// O_DIRECT: writes go from the caller's buffer to the device without a copy
// into the page cache. Filesystems without O_DIRECT (tmpfs before Linux
// 6.6, some FUSE ones) give an error; the caller then writes buffered.
func createDirect(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_DIRECT, 0o600)
}

// fdatasync flushes f's data and the metadata needed to read it back (its
// size and block allocation), not its timestamps.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// alignedBuffer returns n bytes mapped outside the Go heap, page aligned as
// O_DIRECT needs (and not counted towards the garbage collector's goal).
// If mapping fails, the buffer is carved from an aligned heap allocation.
func alignedBuffer(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return heapAligned(n)
	}
	return b
}

// clearDirect turns O_DIRECT off on f, for a last write whose length is not
// a multiple of directAlign.
func clearDirect(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if e == 0 {
			_, _, e = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, fl&^syscall.O_DIRECT)
		}
		if e != 0 {
			serr = e
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fcntl", Path: f.Name(), Err: serr}
	}
	return nil
}
