package agent

import (
	"context"
	"sync"
)

// fillState tells a putter how much of a packed block the reader has
// filled, so that it hashes the block while it is read instead of after:
// the files of a packed block are read 8 at a time in any order, and the
// prefix is the bytes from the start whose every part is in. Once the
// read is over, the putter has the whole block (err nil) or drops it (a
// file changed or could not be read: the reader says which); the buffer
// is given back only after the read is over, since until then the reader
// may still write into it.
type fillState struct {
	mu     sync.Mutex
	prefix int  // bytes filled from the start
	want   int  // a waiter wakes when prefix reaches this (0: none waits)
	done   bool // the read is over
	err    error
	rec    BlockRecord   // the block read (for a live block, known at the end)
	wake   chan struct{} // one wake-up for the waiter
	over   chan struct{} // closed when the read is over
}

func newFillState() *fillState {
	return &fillState{wake: make(chan struct{}, 1), over: make(chan struct{})}
}

// advance says the first prefix bytes are filled (a smaller prefix than
// already said is ignored: readers of several parts call it in any order).
func (f *fillState) advance(prefix int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if prefix <= f.prefix {
		return
	}
	f.prefix = prefix
	if f.want > 0 && prefix >= f.want {
		f.want = 0
		f.signal()
	}
}

// finish says the read is over: the block rec is filled, or err.
func (f *fillState) finish(rec BlockRecord, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err, f.rec = true, err, rec
	if err == nil {
		f.prefix = int(rec.Size)
	}
	f.signal()
	close(f.over)
}

func (f *fillState) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// wait returns once at least want bytes are filled or the read is over:
// the bytes filled, whether the read is over, and its error.
func (f *fillState) wait(ctx context.Context, want int) (prefix int, done bool, err error) {
	for {
		f.mu.Lock()
		if f.done || f.prefix >= want {
			prefix, done, err = f.prefix, f.done, f.err
			f.mu.Unlock()
			return prefix, done, err
		}
		f.want = want
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
}
