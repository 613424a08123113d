package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// planFeed lets an upload run beside the plan that makes its blocks. The
// plan journals files and blocks in batches; after each batch it
// publishes the first block number not journaled yet, so that every
// block from the plan's first up to it is in the journal with the records
// of its files. The reader follows, one block at a time from the journal,
// and waits when it has caught up. A waiting reader makes the plan write
// its next complete block at once instead of with the next full batch
// (hungry), so the first block goes out as soon as it is planned, not
// after 4096 of them.
//
// A reader that has caught up with the packed block the plan is filling
// (live) reads its files as they are planned, so that reading and hashing
// the first 64 MiB of small files overlap with planning them. Such a
// block is complete only once the plan has journaled it (published): the
// reader waits for that before it lets its putter hash the end, so the
// committer never records as stored a block whose record is not in the
// journal.
type planFeed struct {
	mu      sync.Mutex
	started bool
	first   int64 // the plan's first block
	next    int64 // blocks first..next-1 are journaled
	done    bool  // the plan returned; next is final if err is nil
	err     error
	live    *liveBlock    // the packed block being filled, if any
	wake    chan struct{} // closed at each change, then replaced
	over    chan struct{} // closed when the plan returned
	hungry  atomic.Bool   // the reader waits for blocks
}

// liveBlock is a packed block the plan is filling: its parts so far, in
// order, until it is closed (complete; not yet journaled, see planFeed).
type liveBlock struct {
	seq    int64
	mu     sync.Mutex
	parts  []Part
	closed bool
	grew   chan struct{} // closed when parts grow or it closes, if armed
	armed  bool          // since handed grew out: someone may wait on it
}

func newLiveBlock(seq int64) *liveBlock { return &liveBlock{seq: seq, grew: make(chan struct{})} }

// add appends a part.
func (b *liveBlock) add(p Part) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parts = append(b.parts, p)
	b.changed()
}

// changed wakes a reader waiting on grew (only then: not one channel a
// part while the reader is busy).
func (b *liveBlock) changed() {
	if b.armed {
		close(b.grew)
		b.grew, b.armed = make(chan struct{}), false
	}
}

// close says no part follows.
func (b *liveBlock) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.changed()
}

// since returns the parts from index i on (never changed afterwards),
// whether the block is closed, and a channel closed when that changes.
func (b *liveBlock) since(i int) ([]Part, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = true
	return b.parts[i:len(b.parts):len(b.parts)], b.closed, b.grew
}

// setLive says the plan fills b now (nil: none).
func (f *planFeed) setLive(b *liveBlock) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = b
	f.changed()
}

func newPlanFeed() *planFeed {
	return &planFeed{wake: make(chan struct{}), over: make(chan struct{})}
}

// start says the plan's blocks are numbered from first.
func (f *planFeed) start(first int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started, f.first, f.next = true, first, first
	f.changed()
}

// publish says blocks below next are journaled.
func (f *planFeed) publish(next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if next > f.next {
		f.next = next
		f.hungry.Store(false)
		f.changed()
	}
}

// finish says the plan returned err (nil: every block is published).
func (f *planFeed) finish(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err = true, err
	f.changed()
	close(f.over)
}

// result waits for the plan to return and gives its error (ctx's if ctx
// ends first while the plan goes on).
func (f *planFeed) result(ctx context.Context) error {
	select {
	case <-f.over:
	case <-ctx.Done():
		select {
		case <-f.over: // both: the plan's outcome is known, it wins
		default:
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *planFeed) changed() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// wait returns once blocks from have (or from the first block, when have
// is below it) are published, or the plan returned: the range of blocks
// to read now, and whether the plan is over. When the next block is the
// one the plan is filling, it returns it as live instead (and an empty
// range). A plan that failed ends the feed with its error.
func (f *planFeed) wait(ctx context.Context, have int64) (from, next int64, done bool, live *liveBlock, err error) {
	for {
		f.mu.Lock()
		if f.done && f.err != nil {
			f.mu.Unlock()
			return 0, 0, true, nil, f.err
		}
		if f.started && (f.next > max(have, f.first) || f.done) {
			from, next, done = max(have, f.first), f.next, f.done
			f.mu.Unlock()
			return from, next, done, nil, nil
		}
		if f.done { // returned before it started
			f.mu.Unlock()
			return 0, 0, true, nil, nil
		}
		if f.started && f.live != nil && f.live.seq == max(have, f.first) {
			live, from = f.live, max(have, f.first)
			f.mu.Unlock()
			return from, from, false, live, nil
		}
		if err := f.sleep(ctx); err != nil {
			return 0, 0, true, nil, err
		}
	}
}

// sleep, called with mu held, releases it and waits for the next change,
// the reader hungry meanwhile.
func (f *planFeed) sleep(ctx context.Context) error {
	wake := f.wake
	f.mu.Unlock()
	f.hungry.Store(true)
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// published waits until block seq is journaled; a plan that failed (or
// returned without it) gives its error.
func (f *planFeed) published(ctx context.Context, seq int64) error {
	for {
		f.mu.Lock()
		if f.next > seq {
			f.mu.Unlock()
			return nil
		}
		if f.done {
			err := f.err
			f.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("the plan ended without block %d", seq)
			}
			return err
		}
		if err := f.sleep(ctx); err != nil {
			return err
		}
	}
}
