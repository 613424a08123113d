package keepclient

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests assert lower bounds on time only: a limiter can never be made
// to let bytes through early by a slow machine, so they cannot flake that
// way. Upper bounds (how fast it goes) are left to the benchmark.

// arrival is when a receiving server had seen so many bytes of a body.
type arrival struct {
	at    time.Duration // since the test's start
	total int
}

// recordingKeepstore accepts PUTs, records (time, cumulative bytes) while
// reading each body, and answers with a locator for what it received.
type recordingKeepstore struct {
	srv *httptest.Server

	mu       sync.Mutex
	start    time.Time
	arrivals []arrival
	bodies   [][]byte
	fails    int // answer this many PUTs with 503 (after reading the body)
}

func newRecordingKeepstore(t *testing.T) *recordingKeepstore {
	f := &recordingKeepstore{start: time.Now()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Body.Read(buf)
			body = append(body, buf[:n]...)
			if n > 0 {
				f.mu.Lock()
				f.arrivals = append(f.arrivals, arrival{time.Since(f.start), len(body)})
				f.mu.Unlock()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, body)
		fail := f.fails > 0
		f.fails--
		f.mu.Unlock()
		if fail {
			http.Error(w, "volume unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, arvados.HashOf(body)+"+"+strconv.Itoa(len(body))+"\n")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// firstReached returns when the server had first seen at least n bytes.
func (f *recordingKeepstore) firstReached(n int) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.arrivals {
		if a.total >= n {
			return a.at, true
		}
	}
	return 0, false
}

func seededBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestRateLimiter_Put_pacedFromTheStart(t *testing.T) {
	const rate = 2 << 20
	data := seededBytes(3<<20, 1)
	f := newRecordingKeepstore(t)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", f.srv.URL, "disk")}, Replicas: 1})

	f.mu.Lock()
	f.start = time.Now()
	f.mu.Unlock()
	res, err := k.Put(context.Background(), data, PutOptions{RateLimit: NewRateLimiter(rate)})
	require.NoError(t, err)
	assert.Equal(t, arvados.HashOf(data)+"+"+strconv.Itoa(len(data)), res.Locator)

	f.mu.Lock()
	require.Len(t, f.bodies, 1)
	assert.Equal(t, arvados.HashOf(data), arvados.HashOf(f.bodies[0]), "body arrived intact")
	f.mu.Unlock()
	// No initial burst: 1 MiB at 2 MiB/s takes 500 ms; 200 ms leaves slack
	// for clock and scheduling granularity.
	at, ok := f.firstReached(1 << 20)
	require.True(t, ok)
	assert.GreaterOrEqual(t, at, 200*time.Millisecond, "first MiB arrived too soon")
	// And the whole 3 MiB not before ~1.5 s.
	at, ok = f.firstReached(len(data))
	require.True(t, ok)
	assert.GreaterOrEqual(t, at, time.Second, "whole body arrived too soon")
}

func TestRateLimiter_Put_retryResendsWholeBody(t *testing.T) {
	data := seededBytes(256<<10, 2)
	f := newRecordingKeepstore(t)
	f.fails = 1
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", f.srv.URL, "disk")}, Replicas: 1, RetryDelay: time.Millisecond})

	// A rate high enough to keep the test short but low enough that the
	// pacing path is taken.
	res, err := k.Put(context.Background(), data, PutOptions{RateLimit: NewRateLimiter(64 << 20)})
	require.NoError(t, err)
	require.Len(t, res.Failures, 1)
	assert.Equal(t, http.StatusServiceUnavailable, res.Failures[0].Status)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.bodies, 2)
	for i, b := range f.bodies {
		assert.Equal(t, arvados.HashOf(data), arvados.HashOf(b), "attempt %d sent the whole body", i)
	}
}

func TestRateLimiter_Put_emptyBlock(t *testing.T) {
	f := newRecordingKeepstore(t)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", f.srv.URL, "disk")}, Replicas: 1})
	res, err := k.Put(context.Background(), nil, PutOptions{RateLimit: NewRateLimiter(1)})
	require.NoError(t, err)
	assert.Equal(t, arvados.EmptyHash+"+0", res.Locator)
}

func TestRateLimiter_Wait_contextCancel(t *testing.T) {
	l := NewRateLimiter(1 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Wait(ctx, 1<<20) }() // ~17 minutes' worth
	cancel()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		// Not a timing assertion: a Wait that ignored ctx would block for
		// 17 minutes; this only keeps the test from hanging.
		t.Fatal("Wait did not return after cancel")
	}
	// An already-done context returns at once without reserving.
	assert.ErrorIs(t, l.Wait(ctx, 1), context.Canceled)

	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	assert.ErrorIs(t, l.Wait(dctx, 1<<20), context.DeadlineExceeded)
}

func TestRateLimiter_Wait_nilIsNoop(t *testing.T) {
	assert.Nil(t, NewRateLimiter(0))
	assert.Nil(t, NewRateLimiter(-5))
	var l *RateLimiter
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, l.Wait(context.Background(), 1<<30))
	assert.NoError(t, l.Wait(ctx, 1<<30), "nil limiter does nothing, not even check ctx")

	p := &pacedReader{ctx: context.Background(), r: strings.NewReader("hello"), l: l}
	b, err := io.ReadAll(p)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
}

func TestRateLimiter_Wait_concurrentShareBudget(t *testing.T) {
	const rate = 1 << 20
	l := NewRateLimiter(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each asks for 1 s worth in chunks, so together 2 s worth.
			for range rate / rateChunk {
				assert.NoError(t, l.Wait(context.Background(), rateChunk))
			}
		}()
	}
	wg.Wait()
	assert.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "two waiters got more than the shared rate")
}

// TestRateLimiter_reserve_fakeClock checks the bucket's arithmetic on a
// clock the test moves: it starts empty, idle time saves up one burst and
// no more, a request larger than the burst waits its whole share, and a
// waiter that gives up returns its bytes.
func TestRateLimiter_reserve_fakeClock(t *testing.T) {
	const rate = 2 << 20
	now := time.Unix(1_000_000_000, 0)
	l := newRateLimiter(rate, func() time.Time { return now })
	burst := l.lim.Burst()
	require.Equal(t, rate/10, burst)
	const slack = float64(time.Millisecond)

	// Empty at start: the first MiB waits its half second.
	d, _ := l.reserve(1 << 20)
	assert.InDelta(t, float64(500*time.Millisecond), float64(d), slack, "no burst at start")

	// Ten idle seconds pay the debt and save up one burst, not more.
	now = now.Add(10 * time.Second)
	d, _ = l.reserve(burst)
	assert.Equal(t, time.Duration(0), d, "one burst saved up")
	d, _ = l.reserve(1 << 20)
	assert.InDelta(t, float64(500*time.Millisecond), float64(d), slack, "only one burst saved up")

	// A waiter for one burst behind that one waits 0.6 s; when it gives
	// up, its bytes go back and the next waiter waits 0.6 s again, not 0.7.
	d, giveBack := l.reserve(burst)
	assert.InDelta(t, float64(600*time.Millisecond), float64(d), slack)
	giveBack()
	d, _ = l.reserve(burst)
	assert.InDelta(t, float64(600*time.Millisecond), float64(d), slack, "given-back bytes were not returned")

	// More than the burst in one request: 3 MiB at 1 MiB/s from empty.
	l = newRateLimiter(1<<20, func() time.Time { return now })
	d, _ = l.reserve(3 << 20)
	assert.InDelta(t, float64(3*time.Second), float64(d), slack, "a request over the burst waits for all of it")
}

// TestRateLimiter_Wait_givesBackOnCancel: a Wait whose context ends first
// returns its bytes, so the next waiter is not charged for them.
func TestRateLimiter_Wait_givesBackOnCancel(t *testing.T) {
	const rate = 2 << 20
	now := time.Unix(1_000_000_000, 0)
	l := newRateLimiter(rate, func() time.Time { return now })
	burst := l.lim.Burst()
	l.reserve(200 << 20) // 100 s of debt: the Wait below cannot finish first

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	require.ErrorIs(t, l.Wait(ctx, burst), context.Canceled)

	d, _ := l.reserve(burst)
	assert.InDelta(t, float64(100*time.Second+100*time.Millisecond), float64(d), float64(time.Millisecond),
		"the cancelled Wait's bytes were not given back")
}

func TestRateLimiter_pacedReader_chunks(t *testing.T) {
	// Reads are capped at one chunk, whatever buffer the transport offers.
	p := &pacedReader{ctx: context.Background(), r: strings.NewReader(strings.Repeat("x", 3*rateChunk)), l: NewRateLimiter(1 << 40)}
	buf := make([]byte, 1<<20)
	var sizes []int
	for {
		n, err := p.Read(buf)
		if n > 0 {
			sizes = append(sizes, n)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	assert.Equal(t, []int{rateChunk, rateChunk, rateChunk}, sizes)
	_, isWriterTo := any(p).(io.WriterTo)
	assert.False(t, isWriterTo, "a WriterTo would let io.Copy bypass the pacing")
}

// BenchmarkRateLimiter_unlimited puts a 64 MiB block to a local server with
// no limiter, and with a limiter whose rate is never reached, to show what
// the paced path costs over loopback.
func BenchmarkRateLimiter_unlimited(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.TrimPrefix(r.URL.Path, "/")+"+"+strconv.FormatInt(n, 10))
	}))
	defer srv.Close()
	data := seededBytes(arvados.BlockSize, 3)
	hash := arvados.HashOf(data)
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc("zzzzz-bi6l4-000000000000000", srv.URL, "disk")}, Replicas: 1})
	for _, bc := range []struct {
		name string
		rl   *RateLimiter
	}{
		{"nil", nil},
		{"1TiBps", NewRateLimiter(1 << 40)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := k.Put(context.Background(), data, PutOptions{Hash: hash, RateLimit: bc.rl}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
