package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/jobs"
	"github.com/arv-upload/arv-upload/internal/store"
)

// readStatusFile reads the status file at path.
func readStatusFile(path string) (status, error) {
	return jobs.Dir{Path: filepath.Dir(path)}.ReadStatus(strings.TrimSuffix(filepath.Base(path), ".status.json"))
}

// A job name given on the command line never reaches outside the state
// directory: abort would remove JOB.db, JOB.status.json... wherever the
// name points.
func TestPickJob_staysInTheStateDir(t *testing.T) {
	root := t.TempDir()
	sd := jobs.Dir{Path: filepath.Join(root, "arv-upload")}
	require.NoError(t, os.Mkdir(sd.Path, 0o700))
	outside := filepath.Join(root, "victim")
	j, err := store.Open(outside+".db", 0)
	require.NoError(t, err)
	require.NoError(t, j.SetMeta(agent.JobMeta{Job: "victim", Dir: root}))
	require.NoError(t, j.Close())
	for _, name := range []string{"../victim", outside} {
		_, err := pickJob(sd, []string{name})
		var ue usageError
		require.ErrorAs(t, err, &ue, "%q", name)
		assert.ErrorContains(t, err, "no job")
	}

	// Abort through the CLI says the same, and the file stays.
	cmd := newRootCommand()
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	cmd.SetOut(&stderr)
	t.Setenv("XDG_STATE_HOME", root)
	cmd.SetArgs([]string{"abort", "../victim"})
	err = cmd.Execute()
	assert.ErrorContains(t, err, `no job "../victim"`)
	assert.FileExists(t, outside+".db")
}
