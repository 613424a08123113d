package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/internal/testutil"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/devcluster"
)

// Issue 10.3: `arv-server dev` twice on one data directory used to panic in
// the second process; it must return an error (main exits 1) that names the
// directory, and leave the first one running.
func TestDev_dataDirInUse(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := newRootCommand()
	first.SetArgs([]string{"dev", "--data", dir})
	firstErr := &syncBuffer{}
	first.SetOut(io.Discard)
	first.SetErr(firstErr)
	done := make(chan error, 1)
	go func() { done <- first.ExecuteContext(ctx) }()
	for ready := false; !ready; {
		select {
		case err := <-done:
			t.Fatalf("first arv-server dev stopped: %v\n%s", err, firstErr.String())
		case <-time.After(20 * time.Millisecond):
			ready = strings.Contains(firstErr.String(), `"msg":"ready"`)
		}
	}
	envPath := filepath.Join(dir, "env")
	env, err := os.ReadFile(envPath)
	require.NoError(t, err)

	second := newRootCommand()
	second.SetArgs([]string{"dev", "--data", dir})
	var out bytes.Buffer
	second.SetOut(&out)
	second.SetErr(&out)
	err = second.ExecuteContext(context.Background())
	require.ErrorIs(t, err, devcluster.ErrDirInUse)
	assert.Contains(t, err.Error(), dir)
	assert.NotContains(t, out.String(), "ready")
	after, err := os.ReadFile(envPath)
	require.NoError(t, err)
	assert.Equal(t, string(env), string(after), "the second process must not touch the first one's settings")

	cancel()
	require.NoError(t, <-done)
}

// syncBuffer is a log sink the tests read while servers write it.
type syncBuffer = testutil.SyncBuffer
