package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitQueued waits until n PUTs wait in a.
func waitQueued(t *testing.T, a *admission, n int) {
	t.Helper()
	require.Eventually(t, func() bool { _, q := a.stats(); return q == n }, 10*time.Second, time.Millisecond)
}

func TestAdmission_acquire_limits(t *testing.T) {
	ctx := context.Background()
	a := newAdmission(4, 2, 10, 1, time.Minute)
	require.NoError(t, a.acquire(ctx, "A"))
	require.NoError(t, a.acquire(ctx, "A"))
	queuedA := make(chan error, 1)
	go func() { queuedA <- a.acquire(ctx, "A") }()
	waitQueued(t, a, 1)
	assert.ErrorIs(t, a.acquire(ctx, "A"), errUserBusy, "A is at its limit and its queue is full")

	// B is served at once from the slots A may not take.
	require.NoError(t, a.acquire(ctx, "B"))
	require.NoError(t, a.acquire(ctx, "B"))
	running, queued := a.stats()
	assert.Equal(t, 4, running)
	assert.Equal(t, 1, queued)

	// The proxy is full: C waits; a second PUT of C is over C's own
	// queue, and C is refused as the proxy's client, not as a hog.
	queuedC := make(chan error, 1)
	go func() { queuedC <- a.acquire(ctx, "C") }()
	waitQueued(t, a, 2)
	assert.ErrorIs(t, a.acquire(ctx, "C"), errBusy, "C waits for the proxy, not for its own PUTs")

	// A slot of B frees: C gets it (A is at its limit), then one of A's.
	a.release("B")
	require.NoError(t, <-queuedC)
	a.release("A")
	require.NoError(t, <-queuedA)
	running, queued = a.stats()
	assert.Equal(t, 4, running)
	assert.Equal(t, 0, queued)
	for _, u := range []string{"A", "A", "B", "C"} {
		a.release(u)
	}
	assert.Empty(t, a.users, "users with nothing running or waiting are forgotten")
}

func TestAdmission_acquire_globalQueueFull(t *testing.T) {
	ctx := context.Background()
	a := newAdmission(1, 1, 1, 5, time.Minute)
	require.NoError(t, a.acquire(ctx, "X"))
	go a.acquire(ctx, "A")
	waitQueued(t, a, 1)
	assert.ErrorIs(t, a.acquire(ctx, "B"), errBusy)
	a.close()
}

// TestAdmission_dispatch_roundRobin: freed slots go to the waiting users in
// turn, not to the first user's whole backlog.
func TestAdmission_dispatch_roundRobin(t *testing.T) {
	ctx := context.Background()
	a := newAdmission(1, 1, 10, 5, time.Minute)
	require.NoError(t, a.acquire(ctx, "X"))
	granted := make(chan string, 10)
	for i, name := range []string{"a1", "a2", "a3", "b1", "c1"} {
		go func() {
			if assert.NoError(t, a.acquire(ctx, name[:1])) {
				granted <- name
			}
		}()
		waitQueued(t, a, i+1)
	}
	holder := "X"
	var order []string
	for range 5 {
		a.release(holder)
		next := <-granted
		order = append(order, next)
		holder = next[:1]
	}
	a.release(holder)
	assert.Equal(t, []string{"a1", "b1", "c1", "a2", "a3"}, order)
}

func TestAdmission_acquire_waitEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(a *admission, cancel context.CancelFunc)
		want error
	}{
		{"queue timeout", func(*admission, context.CancelFunc) {}, errQueueTimeout},
		{"client gone", func(_ *admission, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"shutdown", func(a *admission, _ context.CancelFunc) { a.close() }, errClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdmission(1, 1, 10, 5, 100*time.Millisecond)
			require.NoError(t, a.acquire(context.Background(), "X"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan error, 1)
			go func() { got <- a.acquire(ctx, "A") }()
			waitQueued(t, a, 1)
			tt.end(a, cancel)
			err := <-got
			assert.ErrorIs(t, err, tt.want)
			if tt.want == errQueueTimeout {
				assert.Equal(t, "proxy busy: no upload slot came free in time (waited 100ms)", err.Error())
			}
			_, queued := a.stats()
			assert.Equal(t, 0, queued)
			a.release("X")
			running, _ := a.stats()
			assert.Equal(t, 0, running, "no slot was lost to the waiter that left")
			if tt.want == errClosed {
				assert.ErrorIs(t, a.acquire(context.Background(), "B"), errClosed)
			} else {
				require.NoError(t, a.acquire(context.Background(), "B"))
			}
		})
	}
}

// TestAdmission_concurrent: under random load no user ever holds more than
// its share and the slots are never overdrawn.
func TestAdmission_concurrent(t *testing.T) {
	const slots, perUser = 6, 2
	a := newAdmission(slots, perUser, 8, 2, 20*time.Millisecond)
	var mu sync.Mutex
	holding := map[string]int{}
	total := 0
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 2))
			user := fmt.Sprint("u", g%5)
			for range 100 {
				if a.acquire(context.Background(), user) != nil {
					continue
				}
				mu.Lock()
				holding[user]++
				total++
				assert.LessOrEqual(t, holding[user], perUser)
				assert.LessOrEqual(t, total, slots)
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
				mu.Lock()
				holding[user]--
				total--
				mu.Unlock()
				a.release(user)
			}
		}()
	}
	wg.Wait()
	running, queued := a.stats()
	assert.Equal(t, 0, running)
	assert.Equal(t, 0, queued)
	assert.Empty(t, a.users)
}

// TestAdmission_acquire_timeoutAtOwnShare: a PUT that waited in vain behind
// its own user's uploads is told so.
func TestAdmission_acquire_timeoutAtOwnShare(t *testing.T) {
	a := newAdmission(4, 1, 10, 5, 50*time.Millisecond)
	require.NoError(t, a.acquire(context.Background(), "A"))
	err := a.acquire(context.Background(), "A")
	assert.ErrorIs(t, err, errQueueTimeout)
	assert.Equal(t, "proxy busy: no upload slot came free in time (waited 50ms: this user's 1 uploads in progress are its share)", err.Error())
}
