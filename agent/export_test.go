package agent

import "context"

// UploadOnly runs the upload phase alone (tests).
func (u *Uploader) UploadOnly(ctx context.Context) error { return u.upload(ctx) }
