package devcluster

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 10.3: a second cluster on a directory in use used to panic (a nil
// pointer in the deferred clean-up); it must fail naming the directory,
// leave the running cluster alone, and the directory must be usable again
// once that one stops.
func TestStart_dirInUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := Start(ctx, Options{Dir: dir, Proxy: true})
	require.NoError(t, err)
	defer first.Close()

	second, err := Start(ctx, Options{Dir: dir, Proxy: true})
	require.ErrorIs(t, err, ErrDirInUse)
	assert.Nil(t, second)
	assert.Contains(t, err.Error(), dir)

	me, err := first.Client(first.UserToken).CurrentUser(ctx)
	require.NoError(t, err, "the running cluster still answers")
	require.NoError(t, first.Close())

	again, err := Start(ctx, Options{Dir: dir, Proxy: true})
	require.NoError(t, err, "the directory is free once the first cluster stopped")
	defer again.Close()
	same, err := again.Client(again.UserToken).CurrentUser(ctx)
	require.NoError(t, err)
	assert.Equal(t, me.UUID, same.UUID)
}
