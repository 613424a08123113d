package keepstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// errNoBuffer means no block buffer became free within the wait bound.
var errNoBuffer = errors.New("no block buffer free")

// smallBlock is the size up to which a request with a known length gets a
// buffer of its own size instead of a pooled 64 MiB one. It still holds one
// of the MaxBuffers slots, so the count bound holds either way.
const smallBlock = 1 << 20

// bufferPool hands out at most max block buffers at a time. 64 MiB buffers
// are allocated on first use and kept for reuse, so the pool's memory is at
// most max * 64 MiB.
type bufferPool struct {
	slots chan struct{}
	mu    sync.Mutex
	free  [][]byte
	inUse atomic.Int64
}

func newBufferPool(max int) *bufferPool {
	return &bufferPool{slots: make(chan struct{}, max)}
}

// acquire waits up to wait (and at most until ctx ends) for a slot. A
// streaming PUT holds a slot but no block buffer (its small windows belong
// to the volume); release gives the slot back.
func (p *bufferPool) acquire(ctx context.Context, wait time.Duration) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-t.C:
		return errNoBuffer
	case <-ctx.Done():
		return ctx.Err()
	}
	p.inUse.Add(1)
	return nil
}

// release gives back a slot taken by acquire.
func (p *bufferPool) release() {
	p.inUse.Add(-1)
	<-p.slots
}

// get waits like acquire for a slot and returns a buffer of at least size
// bytes (size < 0: a full block buffer).
func (p *bufferPool) get(ctx context.Context, size int64, wait time.Duration) ([]byte, error) {
	if err := p.acquire(ctx, wait); err != nil {
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
	p.release()
}
