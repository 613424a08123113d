package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// A panic in a caller's callback (here, another package, as the agent
// is) is a bug, not damage: it goes on, and the journal stays usable.
func TestJournal_callbackPanicIsNotDamage(t *testing.T) {
	ctx := context.Background()
	j, err := store.Open(filepath.Join(t.TempDir(), "job.db"), 0)
	require.NoError(t, err)
	defer j.Close()
	require.NoError(t, j.PutFiles([]agent.FileRecord{{Key: agent.FileKey("", "a"), Path: "a"}}))
	assert.PanicsWithValue(t, "bug", func() {
		j.EachFile(ctx, func(agent.FileRecord) error { panic("bug") })
	})
	require.NoError(t, j.Check(ctx))
}
