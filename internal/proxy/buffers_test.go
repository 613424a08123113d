package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBufferPool_bounded hammers the pool with more holders than buffers
// and blocks of every size, small ones first: it never makes more than n
// buffers (so never more than n×size bytes), never hands one buffer to two
// holders, and a small pooled buffer serves a big block.
func TestBufferPool_bounded(t *testing.T) {
	const n, size = 4, 64 << 10
	p := newBufferPool(n, size)
	var maxMade atomic.Int64
	p.onMake = func(made int) {
		if int64(made) > maxMade.Load() {
			maxMade.Store(int64(made))
		}
	}
	// The first buffer is made for a 1-byte block and serves a full one.
	b, err := p.get(context.Background(), 1)
	require.NoError(t, err)
	p.put(b)
	b, err = p.get(context.Background(), size)
	require.NoError(t, err)
	assert.Len(t, b, size)
	p.put(b)
	made, _ := p.stats()
	require.Equal(t, 1, made, "a too small buffer is reused, not replaced")

	var (
		mu     sync.Mutex
		holder = map[*byte]int{} // buffer -> goroutine holding it
		out    atomic.Int64
		maxOut atomic.Int64
		wg     sync.WaitGroup
	)
	for g := range 8 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 200 {
				length := min(size, 1+i*size/200+r.IntN(size/8)) // growing sizes
				b, err := p.get(context.Background(), length)
				if !assert.NoError(t, err) {
					return
				}
				o := out.Add(1)
				for m := maxOut.Load(); o > m && !maxOut.CompareAndSwap(m, o); m = maxOut.Load() {
				}
				assert.Len(t, b, length)
				assert.Equal(t, size, cap(b))
				key := &b[:1][0]
				mu.Lock()
				other, dup := holder[key]
				holder[key] = g
				mu.Unlock()
				assert.False(t, dup, "buffer held by %d and %d at once", other, g)
				b[0], b[length-1] = byte(g), byte(g) // used like a block
				mu.Lock()
				delete(holder, key)
				mu.Unlock()
				out.Add(-1)
				p.put(b)
			}
		}()
	}
	wg.Wait()
	made, held := p.stats()
	assert.LessOrEqual(t, made, n)
	assert.LessOrEqual(t, maxMade.Load(), int64(n))
	assert.LessOrEqual(t, maxOut.Load(), int64(n))
	assert.LessOrEqual(t, int64(made)*size, int64(n*size), "bytes of buffers over the bound")
	assert.Equal(t, 0, held)

	t.Run("waits while all are out", func(t *testing.T) {
		var bs [][]byte
		for range n {
			b, err := p.get(context.Background(), 10)
			require.NoError(t, err)
			bs = append(bs, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := p.get(ctx, 10)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		for _, b := range bs {
			p.put(b)
		}
		made, _ := p.stats()
		assert.LessOrEqual(t, made, n)
	})
	t.Run("over the block size", func(t *testing.T) {
		_, err := p.get(context.Background(), size+1)
		assert.Error(t, err)
	})
}

// metricValue reads one sample from the proxy's /metrics.
func metricValue(t *testing.T, proxyURL, name string) float64 {
	t.Helper()
	code, _, body := do(t, "GET", proxyURL+"/metrics", strings.NewReader(""), map[string]string{"Authorization": "Bearer mgmt-token"})
	require.Equal(t, 200, code)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, "metric %s missing", name)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestProxy_memoryBound: many concurrent PUTs of growing sizes through the
// real proxy never make more than MaxConcurrent block buffers.
func TestProxy_memoryBound(t *testing.T) {
	const maxConcurrent = 3
	c := newRealCluster(t, func(o *Options) { o.MaxConcurrent = maxConcurrent }, nil)
	var tokens []string
	for i := range 4 {
		_, tok := c.newUser(t, fmt.Sprintf("user%d", i))
		tokens = append(tokens, tok)
	}
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; try < 100; try++ { // 503 (busy) is retried
				code, h, body, err := c.tryPut(tokens[i%len(tokens)], 1000+i*(100<<10)) // 1 kB .. 2.3 MB
				if !assert.NoError(t, err) {
					return
				}
				if code == http.StatusServiceUnavailable && h.Get("Retry-After") != "" {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if assert.Equal(t, 200, code, body) {
					ok.Add(1)
				}
				return
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(24), ok.Load())
	assert.LessOrEqual(t, metricValue(t, c.proxyTS.URL, "arvupload_proxy_block_buffers"), float64(maxConcurrent))
	assert.LessOrEqual(t, metricValue(t, c.proxyTS.URL, "arvupload_proxy_block_buffer_bytes"), float64(maxConcurrent*arvados.BlockSize))
	made, out := c.proxy.bufs.stats()
	assert.LessOrEqual(t, made, maxConcurrent)
	assert.Equal(t, 0, out)
}
