package agent

import "context"

// UploadOnly runs the upload phase alone (tests).
func (u *Uploader) UploadOnly(ctx context.Context) error { return u.upload(ctx) }

// Checkpoint saves the partial collection now (tests).
func (u *Uploader) Checkpoint(ctx context.Context) error { return u.checkpoint(ctx) }

// SetReadHook makes the reader call f with each file path it reads
// (tests); nil removes it.
func SetReadHook(f func(path string)) { readHook = f }
