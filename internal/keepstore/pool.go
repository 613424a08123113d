package keepstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"golang.org/x/sync/semaphore"
)

// errNoBuffer means no block buffer became free within the wait bound.
var errNoBuffer = errors.New("no block buffer free")

// smallBlock is the size up to which a request with a known length gets a
// buffer of its own size instead of a pooled 64 MiB one. It still holds one
// of the MaxBuffers slots, so the count bound holds either way.
const smallBlock = 1 << 20

// Block memory is counted in units of one streaming PUT's write windows
// (writeDepth x writeWindow = 4 MiB): a 64 MiB block buffer is
// bufferUnits of them, a streaming PUT streamUnits.
const (
	streamUnits = 1
	bufferUnits = arvados.BlockSize / (writeDepth * writeWindow)
)

// bufferPool bounds block memory to max 64 MiB buffers' worth: a request
// holding a block buffer takes bufferUnits of max*bufferUnits units, a
// streaming PUT (whose windows belong to the volume) streamUnits, so 16
// streaming PUTs fit where one buffered request does. 64 MiB buffers are
// allocated on first use and kept for reuse, so the pool's memory is at
// most max * 64 MiB.
type bufferPool struct {
	sem   *semaphore.Weighted
	mu    sync.Mutex
	free  [][]byte
	inUse atomic.Int64 // requests holding units
}

func newBufferPool(max int) *bufferPool {
	return &bufferPool{sem: semaphore.NewWeighted(int64(max) * bufferUnits)}
}

// acquire waits up to wait (and at most until ctx ends) for units;
// release gives them back.
func (p *bufferPool) acquire(ctx context.Context, wait time.Duration, units int64) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := p.sem.Acquire(wctx, units); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errNoBuffer
	}
	p.inUse.Add(1)
	return nil
}

// release gives back units taken by acquire.
func (p *bufferPool) release(units int64) {
	p.inUse.Add(-1)
	p.sem.Release(units)
}

// get waits like acquire for a slot and returns a buffer of at least size
// bytes (size < 0: a full block buffer).
func (p *bufferPool) get(ctx context.Context, size int64, wait time.Duration) ([]byte, error) {
	if err := p.acquire(ctx, wait, bufferUnits); err != nil {
		return nil, err
	}
	if size >= 0 && size <= smallBlock {
		return make([]byte, size), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b, nil
	}
	return make([]byte, arvados.BlockSize), nil
}

// put returns a buffer obtained from get.
func (p *bufferPool) put(b []byte) {
	if cap(b) == arvados.BlockSize {
		p.mu.Lock()
		p.free = append(p.free, b[:arvados.BlockSize])
		p.mu.Unlock()
	}
	p.release(bufferUnits)
}
