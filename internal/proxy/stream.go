package proxy

import (
	"errors"
	"io"
	"sync"
	"time"
)

// streamWindow is the size of the ring a streamed PUT holds when it has no
// full block buffer (1 MiB): the memory of a PUT in the common path. It is
// also how much of a body is read before its PUT decides between
// cut-through and store-and-forward (see cutThroughBudget).
const streamWindow = 1 << 20

// cutThroughBudget: a body whose first streamWindow bytes came at a pace
// that would bring the whole block within this time is streamed to the
// keepstores as it arrives; a slower one is held whole first (a 64 MiB
// buffer), so that a slow client never holds keepstore requests (and
// their buffers) open for long: our keepstores cut a request after 5
// minutes (ReadTimeout), leaving room for the pace to drop fivefold.
const cutThroughBudget = time.Minute

var (
	// errStreamClosed: the upstream write ended (it failed for good)
	// before the body was read whole.
	errStreamClosed = errors.New("upstream write ended before the body was read")
	// errReaderShut is what an upstream reader gets once its attempt or
	// the whole write has ended.
	errReaderShut = errors.New("block stream read after its PUT attempt ended")
)

// blockStream holds the bytes of one block on their way from the client's
// body (one producer: fill) to the upstream PUTs (readers, one per
// attempt). buf is a ring: byte i of the block is at buf[i % len(buf)].
// When len(buf) >= size the ring holds the whole block (a full block
// buffer: any number of readers may start over), else it is a window: the
// producer waits while it is len(buf) bytes ahead of the slowest reader,
// and a new reader can start only while byte 0 has not been overwritten.
//
// Until some reader has read (pin), the producer keeps byte 0 even
// without readers, so the first upstream PUTs all start from the first
// byte. After that an open reader holds the bytes from its offset on:
// PutStream closes a failed attempt's reader only after starting its
// replacement, so a connection refused (a reader still at 0) is replaced.
type blockStream struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	size int64

	filled   int64 // bytes readers may read
	reserved int64 // end of the region handed to the producer (>= filled)
	pin      bool  // no reader has read yet: keep byte 0
	readers  map[*streamReader]struct{}
	err      error // abort: readers fail with it
	closed   bool  // the upstream write ended: readers and producer stop

	publishes int // publish calls (tests)
}

func newBlockStream(buf []byte, size int64) *blockStream {
	b := &blockStream{buf: buf, size: size, pin: true, readers: map[*streamReader]struct{}{}}
	b.cond.L = &b.mu
	return b
}

// whole reports whether the ring holds the whole block.
func (b *blockStream) whole() bool { return int64(len(b.buf)) >= b.size }

// floor is the lowest offset still needed (mu held).
func (b *blockStream) floor() int64 {
	if b.pin {
		return 0
	}
	f := b.filled
	for r := range b.readers {
		f = min(f, r.off)
	}
	return f
}

// space returns the next region of the ring the producer may fill, waiting
// while the ring is full of bytes a reader still needs; waited is how long
// it waited. The region ends at the block's end.
func (b *blockStream) space() (p []byte, waited time.Duration, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var start time.Time
	capacity := int64(len(b.buf))
	var free int64
	for {
		if b.closed {
			return nil, waited, errStreamClosed
		}
		if b.err != nil {
			return nil, waited, b.err
		}
		if free = b.floor() + capacity - b.filled; free > 0 {
			break
		}
		if start.IsZero() {
			start = time.Now()
		}
		b.cond.Wait()
	}
	if !start.IsZero() {
		waited = time.Since(start)
	}
	off := b.filled % capacity
	n := min(capacity-off, free, b.size-b.filled)
	b.reserved = b.filled + n
	return b.buf[off : off+n], waited, nil
}

// publish makes the next n bytes (written into the region from space)
// readable.
func (b *blockStream) publish(n int) {
	b.mu.Lock()
	b.publishes++
	b.filled += int64(n)
	b.reserved = b.filled
	b.cond.Broadcast()
	b.mu.Unlock()
}

// abort makes every reader fail with err (the upstream requests stay
// incomplete, so nothing is stored) and no new reader start.
func (b *blockStream) abort(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// close ends the stream once the upstream write returned: readers fail,
// the producer stops. After close nothing touches buf but the producer's
// goroutine, so the buffer may go back to its pool when fill returned.
func (b *blockStream) close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// grow moves the stream into buf, which must hold the whole block, while
// no reader exists and byte 0 is still in the ring (before the upstream
// write starts).
func (b *blockStream) grow(buf []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(buf, b.buf[:b.filled])
	b.buf = buf
}

// NewReader implements keepclient.BlockSource.
func (b *blockStream) NewReader() (io.ReadCloser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil || b.reserved > int64(len(b.buf)) {
		return nil, false
	}
	r := &streamReader{b: b}
	b.readers[r] = struct{}{}
	return r, true
}

// streamReader is one upstream PUT's view of a blockStream.
type streamReader struct {
	b    *blockStream
	off  int64
	done bool
}

func (r *streamReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		switch {
		case r.done || b.closed:
			return 0, errReaderShut
		case b.err != nil:
			return 0, b.err
		case r.off < b.filled:
		case r.off >= b.size:
			return 0, io.EOF
		default:
			b.cond.Wait()
			continue
		}
		break
	}
	capacity := int64(len(b.buf))
	off := r.off % capacity
	end := min(capacity, off+b.filled-r.off)
	n := copy(p, b.buf[off:end])
	r.off += int64(n)
	b.pin = false
	b.cond.Broadcast()
	return n, nil
}

func (r *streamReader) Close() error {
	b := r.b
	b.mu.Lock()
	if !r.done {
		r.done = true
		delete(b.readers, r)
		b.cond.Broadcast()
	}
	b.mu.Unlock()
	return nil
}

// readerCount returns the number of open readers (tests).
func (b *blockStream) readerCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.readers)
}
