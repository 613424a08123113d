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
