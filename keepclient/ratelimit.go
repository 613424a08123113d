package keepclient

import (
	"context"
	"io"
	"sync"
	"time"
)

// rateChunk is the most a paced body hands to the transport per Read: small
// enough that a 64 MiB block is sent as ~2000 evenly spaced writes rather
// than a few large bursts, large enough that the per-chunk cost (one mutex,
// at most one timer) is negligible next to the copy itself.
const rateChunk = 32 << 10

// RateLimiter is a token bucket in bytes per second, shared by any number of
// concurrent request bodies to cap their total throughput. It is safe for
// concurrent use. A nil *RateLimiter means unlimited: its methods do nothing.
//
// The bucket starts empty, so there is no burst at start-up: by any time t
// after the limiter is created at most rate*t bytes have been let through.
// Waiters may drive the bucket negative (each reserves its bytes and then
// sleeps off its share of the debt), which keeps them in arrival order and
// lets a single Wait ask for more than the burst.
type RateLimiter struct {
	rate  float64 // bytes per second, > 0
	burst float64 // most tokens that idle time can save up

	mu     sync.Mutex
	tokens float64 // may be negative: bytes promised to current waiters
	last   time.Time
}

// NewRateLimiter returns a limiter letting through bytesPerSecond bytes per
// second, or nil (unlimited) when bytesPerSecond <= 0.
func NewRateLimiter(bytesPerSecond int64) *RateLimiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	rate := float64(bytesPerSecond)
	// The burst is what idle time may save up. It has to absorb wake-up
	// latency (timers firing late, GC, a slow socket write): budget not
	// spent on time is lost once the bucket is full, and the limiter would
	// then run below its rate. A tenth of a second's worth covers that
	// while bounding the overshoot after an idle period to 10% over any
	// one-second window. The floor of one chunk keeps very low rates from
	// losing a whole chunk's budget to a late wake-up.
	return &RateLimiter{
		rate:  rate,
		burst: max(rate/10, rateChunk),
		last:  time.Now(),
	}
}

// refill adds the tokens earned since the last call. l.mu must be held.
func (l *RateLimiter) refill(now time.Time) {
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
}

// Wait blocks until n more bytes may pass, or until ctx is done, in which
// case it returns ctx.Err() and the n bytes are given back to the bucket. It
// is a no-op on a nil limiter or for n <= 0.
func (l *RateLimiter) Wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	l.refill(time.Now())
	l.tokens -= float64(n)
	debt := -l.tokens
	l.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(debt / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		l.refill(time.Now())
		l.tokens = min(l.burst, l.tokens+float64(n))
		l.mu.Unlock()
		return ctx.Err()
	}
}

// pacedReader hands r to the HTTP transport at most rateChunk bytes per
// Read, each only after the limiter lets them through. It deliberately has
// no WriteTo: io.Copy would use it (bytes.Reader has one) and bypass the
// pacing.
type pacedReader struct {
	ctx context.Context
	r   io.Reader
	l   *RateLimiter
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > rateChunk {
		b = b[:rateChunk]
	}
	// Read first and charge what was actually read, so a short read is not
	// over-charged; the bytes reach the transport only after Wait.
	n, err := p.r.Read(b)
	if n > 0 {
		if werr := p.l.Wait(p.ctx, n); werr != nil {
			return 0, werr
		}
	}
	return n, err
}
