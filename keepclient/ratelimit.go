package keepclient

import (
	"context"
	"io"
	"time"

	"golang.org/x/time/rate"
)

// rateChunk is the most a paced body hands to the transport per Read: small
// enough that a 64 MiB block is sent as ~2000 evenly spaced writes rather
// than a few large bursts, large enough that the per-chunk cost (one mutex,
// at most one timer) is negligible next to the copy itself.
const rateChunk = 32 << 10

// RateLimiter caps in bytes per second the total throughput of any number
// of concurrent request bodies sharing it. It is a token bucket
// (golang.org/x/time/rate) and is safe for concurrent use. A nil
// *RateLimiter means unlimited: its methods do nothing.
//
// The bucket starts empty, so there is no burst at start-up: by any time t
// after the limiter is created at most rate*t bytes have been let through.
// Each Wait reserves its bytes at once, possibly ahead of the bucket, and
// then sleeps off its share of the debt, which keeps waiters in arrival
// order and lets a single Wait ask for more than the burst.
type RateLimiter struct {
	lim *rate.Limiter
	now func() time.Time // time.Now; tests move a fake clock
}

// NewRateLimiter returns a limiter letting through bytesPerSecond bytes per
// second, or nil (unlimited) when bytesPerSecond <= 0.
func NewRateLimiter(bytesPerSecond int64) *RateLimiter {
	return newRateLimiter(bytesPerSecond, time.Now)
}

func newRateLimiter(bytesPerSecond int64, now func() time.Time) *RateLimiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	// The burst is what idle time may save up. It has to absorb wake-up
	// latency (timers firing late, GC, a slow socket write): budget not
	// spent on time is lost once the bucket is full, and the limiter would
	// then run below its rate. A tenth of a second's worth covers that
	// while bounding the overshoot after an idle period to 10% over any
	// one-second window. The floor of one chunk keeps very low rates from
	// losing a whole chunk's budget to a late wake-up, and lets every Read
	// of a paced body be one reservation.
	burst := int(min(max(bytesPerSecond/10, rateChunk), 1<<30))
	l := &RateLimiter{lim: rate.NewLimiter(rate.Limit(bytesPerSecond), burst), now: now}
	// rate.Limiter starts full; spend the burst so it starts empty.
	l.lim.AllowN(now(), burst)
	return l
}

// reserve takes n bytes from the bucket now and returns how long to wait
// before they may pass, and a function giving them back (for a waiter
// whose context ended first). rate.Limiter refuses a reservation larger
// than its burst, so a larger request is split into burst-sized
// reservations made back to back, and waits for the last one.
func (l *RateLimiter) reserve(n int) (time.Duration, func()) {
	now := l.now()
	var rs []*rate.Reservation
	var delay time.Duration
	for b := l.lim.Burst(); n > 0; n -= b {
		r := l.lim.ReserveN(now, min(n, b))
		rs = append(rs, r)
		delay = max(delay, r.DelayFrom(now))
	}
	return delay, func() {
		at := l.now()
		for i := len(rs) - 1; i >= 0; i-- {
			rs[i].CancelAt(at)
		}
	}
}

// Wait blocks until n more bytes may pass, or until ctx is done, in which
// case it returns ctx.Err() and gives the n bytes back to the bucket: all
// of them when n is at most the burst, as a paced body's reads always are;
// of a larger request, only what rate.Limiter can still take back (it
// returns back-to-back reservations only in part). It is a no-op on a nil
// limiter or for n <= 0.
func (l *RateLimiter) Wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	delay, giveBack := l.reserve(n)
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		giveBack()
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
