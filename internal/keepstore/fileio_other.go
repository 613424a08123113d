//go:build !linux

package keepstore

import (
	"errors"
	"os"
)

const directAlign = 4096

// createDirect is Linux only; elsewhere every write is buffered.
func createDirect(name string) (*os.File, error) {
	return nil, errors.New("O_DIRECT is not supported on this system")
}

// fdatasync is a full fsync where fdatasync(2) is not available.
func fdatasync(f *os.File) error { return f.Sync() }

func alignedBuffer(n int) []byte { return heapAligned(n) }

func clearDirect(f *os.File) error { return nil }
