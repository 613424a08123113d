package agent

import "context"

// UploadOnly runs the upload phase alone (tests).
func (u *Uploader) UploadOnly(ctx context.Context) error { return u.upload(ctx, nil) }

// ScanAndUpload scans and uploads as Run does, without the API server's
// part (tests, benchmarks).
func (u *Uploader) ScanAndUpload(ctx context.Context) error { return u.scanAndUpload(ctx) }

// Checkpoint saves the partial collection now (tests).
func (u *Uploader) Checkpoint(ctx context.Context) error { return u.checkpoint(ctx) }

// WithBlockSize returns cfg with plans that use n-byte blocks (tests).
func WithBlockSize(cfg Config, n int64) Config {
	cfg.blockSize = n
	return cfg
}

// SetReadHook makes u's reader call f with each file path it reads, from
// several goroutines at once (tests); nil removes it.
func (u *Uploader) SetReadHook(f func(path string)) { u.cfg.readHook = f }

// SetBeforeSend makes u run f between measuring a manifest and sending it
// (tests); nil removes it.
func (u *Uploader) SetBeforeSend(f func()) { u.cfg.beforeSend = f }

// Retryable is retryable (tests).
func Retryable(err error) bool { return retryable(err) }

// WithStatParallelism returns cfg with a walk that has n stat calls in
// flight per directory (tests).
func WithStatParallelism(cfg Config, n int) Config {
	cfg.statParallelism = n
	return cfg
}

// SetPlanHook makes u's plan call f with each path it visits, before it
// plans it (tests); nil removes it.
func (u *Uploader) SetPlanHook(f func(path string)) { u.cfg.planHook = f }

// MeasureManifest runs the finish's pass over the journal that measures
// the finished collection's manifest (benchmarks).
func (u *Uploader) MeasureManifest(ctx context.Context) error {
	m, err := u.measureManifest(ctx, false, true)
	if err == nil {
		m.release()
	}
	return err
}

// SetHashHook makes u's putters call f with the sequence number of each
// block hashed, before it is sent (tests); nil removes it.
func (u *Uploader) SetHashHook(f func(seq int64)) { u.cfg.hashHook = f }
