package keepstore

import (
	"context"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBufferPool_get(t *testing.T) {
	ctx := context.Background()
	p := newBufferPool(2)
	a, err := p.get(ctx, -1, time.Second)
	require.NoError(t, err)
	assert.Len(t, a, arvados.BlockSize)
	small, err := p.get(ctx, 10, time.Second)
	require.NoError(t, err)
	assert.Len(t, small, 10)
	assert.EqualValues(t, 2, p.inUse.Load())

	_, err = p.get(ctx, 10, 10*time.Millisecond)
	assert.ErrorIs(t, err, errNoBuffer, "a small buffer still holds a slot")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.get(cctx, 10, time.Hour)
	assert.ErrorIs(t, err, context.Canceled)

	p.put(small)
	p.put(a)
	assert.Zero(t, p.inUse.Load())
	b, err := p.get(ctx, -1, time.Second)
	require.NoError(t, err)
	assert.Same(t, &a[0], &b[0], "64 MiB buffers are reused")
	p.put(b)
	assert.Len(t, p.free, 1, "small buffers are not kept")
}

// Streaming PUTs and block buffers share one bound: bufferUnits streams fit
// where one buffer does, and a buffer waits while streams hold its units.
func TestBufferPool_streamUnits(t *testing.T) {
	ctx := context.Background()
	p := newBufferPool(1)
	for range bufferUnits - 1 {
		require.NoError(t, p.acquire(ctx, time.Second, streamUnits))
	}
	_, err := p.get(ctx, -1, 10*time.Millisecond)
	assert.ErrorIs(t, err, errNoBuffer, "15 streams leave no room for a 64 MiB buffer")
	require.NoError(t, p.acquire(ctx, time.Second, streamUnits), "the 16th stream fits")
	assert.ErrorIs(t, p.acquire(ctx, 10*time.Millisecond, streamUnits), errNoBuffer, "a 17th does not")
	assert.EqualValues(t, bufferUnits, p.inUse.Load())
	for range bufferUnits {
		p.release(streamUnits)
	}
	b, err := p.get(ctx, -1, time.Second)
	require.NoError(t, err)
	p.put(b)
	assert.Zero(t, p.inUse.Load())
}
