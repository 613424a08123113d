package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpool_Append_reopenKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir)
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(t, sp.Append(ctx, AuditRecord{Locator: fmt.Sprintf("%032x+%d", i, i), Time: time.Unix(int64(i), 0)}))
	}
	assert.Equal(t, 5, sp.Depth())
	first, err := sp.peek(2)
	require.NoError(t, err)
	require.Len(t, first, 2)
	require.NoError(t, sp.remove(first[0].key))
	require.NoError(t, sp.Close())

	sp, err = OpenSpool(dir)
	require.NoError(t, err)
	defer sp.Close()
	assert.Equal(t, 4, sp.Depth())
	all, err := sp.peek(10)
	require.NoError(t, err)
	require.Len(t, all, 4)
	for i, it := range all {
		assert.Equal(t, fmt.Sprintf("%032x+%d", i+1, i+1), it.rec.Locator)
		assert.Len(t, it.rec.ID, 32, "a record id is assigned when spooled")
	}
	assert.Equal(t, all[0].rec.ID, first[1].rec.ID, "ids survive a reopen")
}

func TestSpool_Append_concurrent(t *testing.T) {
	sp, err := OpenSpool(t.TempDir())
	require.NoError(t, err)
	defer sp.Close()
	errs := make(chan error, 20)
	for i := range 20 {
		go func() { errs <- sp.Append(context.Background(), AuditRecord{Locator: fmt.Sprint(i)}) }()
	}
	for range 20 {
		require.NoError(t, <-errs)
	}
	all, err := sp.peek(100)
	require.NoError(t, err)
	assert.Len(t, all, 20)
	assert.Equal(t, 20, sp.Depth())
}
