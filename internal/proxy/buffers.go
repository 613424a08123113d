package proxy

import (
	"context"
	"fmt"
	"sync"
)

// bufferPool hands out block buffers. Every buffer is a full block buffer
// (size bytes, whatever the block it holds), made when first needed and
// never dropped, and at most n exist: the pool never holds more than
// n×size bytes, whatever mix of block sizes comes. (A pool that replaced a
// too small buffer by a bigger one would leave the old one to the garbage
// collector, and the heap would outgrow the bound until it ran.) The most
// recently freed buffer is reused first, so a lightly loaded proxy keeps
// few buffers resident; the pages of a buffer are resident only once a
// block has been written into them.
//
// get and put are safe for concurrent use.
type bufferPool struct {
	size   int
	tokens chan struct{} // one per buffer handed out; capacity n

	mu   sync.Mutex
	free [][]byte // most recently freed last
	made int

	onMake func(made int) // called (under mu) after a buffer is made; metrics
}

func newBufferPool(n, size int) *bufferPool {
	return &bufferPool{size: size, tokens: make(chan struct{}, n), onMake: func(int) {}}
}

// get returns a buffer of length length (at most the pool's size). When all
// n buffers are out it waits for one until ctx is done. The proxy's
// admission hands out at most n slots, so it never waits there.
func (p *bufferPool) get(ctx context.Context, length int) ([]byte, error) {
	if length > p.size {
		return nil, fmt.Errorf("get buffer of %d bytes: over the %d-byte block size", length, p.size)
	}
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("get buffer: %w", ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free = p.free[:k-1]
		return b[:length], nil
	}
	p.made++
	p.onMake(p.made)
	return make([]byte, length, p.size), nil
}

// put gives back a buffer from get.
func (p *bufferPool) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b[:0])
	p.mu.Unlock()
	<-p.tokens
}

// stats returns how many buffers exist and how many are handed out.
func (p *bufferPool) stats() (made, out int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.made, p.made - len(p.free)
}

// takeRetryCopy reports whether a streamed PUT may hold a full block
// buffer as its copy for retries (one of RetryBuffers); it never waits.
// giveRetryCopy gives the permission back.
func (s *Server) takeRetryCopy() bool {
	select {
	case s.copies <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) giveRetryCopy() { <-s.copies }
