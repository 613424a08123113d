package keepstore

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// ErrNotFound means the volume does not hold the block.
var ErrNotFound = errors.New("block not found")

// ErrFull means the volume has no room for the block. Implementations may
// also return errors wrapping syscall.ENOSPC or syscall.EDQUOT; IsFull
// recognises all three.
var ErrFull = errors.New("volume full")

// IsFull reports whether err means "out of space" (ErrFull, ENOSPC, EDQUOT),
// which the server answers with 507 rather than 503.
func IsFull(err error) bool {
	return errors.Is(err, ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// BlockInfo describes one stored block.
type BlockInfo struct {
	Hash  string    // 32 lowercase hex digits
	Size  int64     // bytes
	Mtime time.Time // last write or Touch
}

// Volume is a place blocks live. The server checks hashes and sizes; a
// Volume only stores bytes under a hash. All methods are safe for concurrent
// use, including concurrent Puts of the same hash.
type Volume interface {
	// Put stores data under hash durably: when Put returns nil the block
	// survives a crash, and a failed or interrupted Put never leaves a
	// partial block visible under hash. Putting a hash that already exists
	// replaces it (the server compares contents first). Out-of-space
	// errors satisfy IsFull.
	Put(ctx context.Context, hash string, data []byte) error
	// Get opens the block for reading. The caller closes the reader.
	// A missing block gives an error wrapping ErrNotFound.
	Get(ctx context.Context, hash string) (io.ReadCloser, error)
	// Head returns the block's size and mtime, or ErrNotFound.
	Head(ctx context.Context, hash string) (BlockInfo, error)
	// Index calls fn for every block whose hash starts with prefix, in
	// ascending hash order. An error from fn stops the walk and is returned.
	Index(ctx context.Context, prefix string, fn func(BlockInfo) error) error
	// Touch sets the block's mtime to now, or returns ErrNotFound.
	Touch(ctx context.Context, hash string) error
}

// StreamVolume is a Volume that can store a block as its body arrives, so
// that the server needs no block buffer and the disk writes while the
// network still delivers. DirVolume is one.
type StreamVolume interface {
	Volume
	// Create starts writing the block hash. Nothing is visible under hash
	// until BlockWriter.Commit returns nil.
	Create(ctx context.Context, hash string) (BlockWriter, error)
}

// BlockWriter is one block being written by a StreamVolume. The caller
// calls ReadFrom once, then exactly one of Commit or Abort.
type BlockWriter interface {
	// ReadFrom reads r to io.EOF into the block, reading straight into
	// the volume's write buffers. It returns r's error as is (never
	// io.EOF), or a write error, which wraps the cause (IsFull).
	ReadFrom(r io.Reader) (int64, error)
	// Commit makes the block durable under its hash: when it returns nil
	// the block survives a crash. On error nothing is left under hash
	// that was not there before.
	Commit() error
	// Abort discards what was written; it leaves nothing behind.
	Abort() error
}
