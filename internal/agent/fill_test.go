package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A putter waiting for a packed block wakes when enough is filled, never
// sees the prefix go back (parts complete in any order), gets the whole
// block when the read is over, and an error when it failed.
func TestFillState(t *testing.T) {
	ctx := context.Background()
	f := newFillState()
	got := make(chan int, 1)
	go func() {
		n, done, err := f.wait(ctx, 300)
		assert.False(t, done)
		assert.NoError(t, err)
		got <- n
	}()
	f.advance(100)
	f.advance(250)
	f.advance(200) // an earlier part's reader, late: ignored
	select {
	case n := <-got:
		t.Fatalf("woke at %d, before 300 bytes were filled", n)
	case <-time.After(20 * time.Millisecond):
	}
	f.advance(400)
	require.Equal(t, 400, <-got)
	n, done, err := f.wait(ctx, 300)
	assert.Equal(t, 400, n, "already filled: no wait")
	assert.False(t, done)
	assert.NoError(t, err)

	f.finish(BlockRecord{Size: 1000}, nil)
	n, done, err = f.wait(ctx, 1000)
	assert.Equal(t, 1000, n)
	assert.True(t, done)
	assert.NoError(t, err)
	<-f.over

	failed := newFillState()
	failed.advance(10)
	errRead := errors.New("read failed")
	go failed.finish(BlockRecord{Size: 100}, errRead)
	_, done, err = failed.wait(ctx, 100)
	assert.True(t, done)
	assert.ErrorIs(t, err, errRead)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = newFillState().wait(cctx, 1)
	assert.ErrorIs(t, err, context.Canceled)
}
