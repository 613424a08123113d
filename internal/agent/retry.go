package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/arv-upload/arv-upload/keepclient"
)

// Outages: a days-long upload must ride out a router reboot or a cluster
// restart. When a run fails with an error that retrying can fix (see
// retryable), runRetrying waits and runs again (the journal keeps what
// was stored, so a new run sends only the rest), for as long as
// Options.RetryFor allows, counted from the first failure since a block
// was last stored. Waits start at Config.RetryWait and double up to
// maxRetryWait, with jitter, so that many clients do not come back at
// once. Progress says so while it waits (Retrying, LastError, Attempt,
// FailingSince, RetryAt) and Warn gets one line per attempt.

// maxRetryWait caps the wait between attempts: short enough that an
// upload resumes within minutes of the network coming back.
const maxRetryWait = 3 * time.Minute

// defaultRetryWait is the first wait (Config.RetryWait 0).
const defaultRetryWait = 10 * time.Second

// retryable reports whether err is an outage that retrying can fix: a
// transport error, a 5xx (but 507), 408 or 429 from the API server, the
// proxy or a keepstore, or Keep writes that failed only that way. Refused
// tokens, invalid requests, full disks and unreadable files are not.
func retryable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, keepclient.ErrTokenRefused),
		errors.Is(err, ErrFileChanged), errors.Is(err, ErrInvalidName):
		return false
	}
	var pe *fs.PathError // a local file: unreadable, or the journal's disk full
	if errors.As(err, &pe) || errors.Is(err, syscall.ENOSPC) {
		return false
	}
	return keepclient.IsTemporary(err)
}

func (u *Uploader) runRetrying(ctx context.Context) error {
	wait := u.cfg.RetryWait
	var since time.Time
	attempt := 0
	for {
		stored := u.Progress().BlocksStored
		err := u.run(ctx)
		if err == nil || ctx.Err() != nil || !retryable(err) || u.meta.Options.RetryFor <= 0 {
			u.report(func(p *Progress) { p.Retrying, p.RetryAt = false, time.Time{} })
			return err
		}
		now := time.Now()
		if u.Progress().BlocksStored > stored || since.IsZero() {
			// Progress since the last failure: a new outage.
			since, attempt, wait = now, 0, u.cfg.RetryWait
		}
		if now.Sub(since) >= u.meta.Options.RetryFor {
			return fmt.Errorf("%w (retried since %s, for --retry-for %s)", err, since.Format("Jan 2 15:04"), u.meta.Options.RetryFor)
		}
		attempt++
		d := wait/2 + rand.N(wait/2+1) // jitter: many clients do not come back at once
		wait = min(2*wait, maxRetryWait)
		u.report(func(p *Progress) {
			p.Retrying, p.LastError, p.Attempt, p.FailingSince, p.RetryAt = true, err.Error(), attempt, since, now.Add(d)
		})
		u.cfg.Warn(fmt.Sprintf("retrying in %s (%s, attempt %d, since %s)", d.Round(time.Second), shortCause(err), attempt, since.Format("15:04")))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		u.report(func(p *Progress) { p.Retrying = false })
	}
}

// shortCause names an outage in a few words for the retry line.
func shortCause(err error) string {
	var ae *keepclient.APIError
	switch {
	case errors.As(err, &ae):
		return fmt.Sprintf("HTTP %d", ae.Status)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return "timed out"
	}
	return "network error"
}
