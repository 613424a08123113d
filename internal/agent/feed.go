package agent

import (
	"context"
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
// after 4096 of them. Nothing is handed over in memory: what the reader
// reads is what a crash would leave.
type planFeed struct {
	mu      sync.Mutex
	started bool
	first   int64 // the plan's first block
	next    int64 // blocks first..next-1 are journaled
	done    bool  // the plan returned; next is final if err is nil
	err     error
	wake    chan struct{} // closed at each change, then replaced
	over    chan struct{} // closed when the plan returned
	hungry  atomic.Bool   // the reader waits for blocks
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
// to read now, and whether the plan is over. A plan that failed ends the
// feed with its error.
func (f *planFeed) wait(ctx context.Context, have int64) (from, next int64, done bool, err error) {
	for {
		f.mu.Lock()
		if f.done && f.err != nil {
			f.mu.Unlock()
			return 0, 0, true, f.err
		}
		if f.started && (f.next > max(have, f.first) || f.done) {
			from, next, done = max(have, f.first), f.next, f.done
			f.mu.Unlock()
			return from, next, done, nil
		}
		if f.done { // returned before it started
			f.mu.Unlock()
			return 0, 0, true, nil
		}
		wake := f.wake
		f.mu.Unlock()
		f.hungry.Store(true)
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, 0, true, ctx.Err()
		}
	}
}
