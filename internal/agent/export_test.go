package agent

import (
	"context"

	"github.com/arv-upload/arv-upload/arvados"
)

// UploadOnly runs the upload phase alone (tests).
func (u *Uploader) UploadOnly(ctx context.Context) error { return u.upload(ctx) }

// Checkpoint saves the partial collection now (tests).
func (u *Uploader) Checkpoint(ctx context.Context) error { return u.checkpoint(ctx) }

// SetReadHook makes the reader call f with each file path it reads
// (tests); nil removes it.
func SetReadHook(f func(path string)) { readHook = f }

// SetBlockSize makes plans use n-byte blocks (tests); the returned func
// restores the real size.
func SetBlockSize(n int64) (restore func()) {
	blockSize = n
	return func() { blockSize = arvados.BlockSize }
}

// SetBeforeSend makes f run between measuring a manifest and sending it
// (tests); nil removes it.
func SetBeforeSend(f func()) { beforeSend = f }

// Retryable is retryable (tests).
func Retryable(err error) bool { return retryable(err) }
