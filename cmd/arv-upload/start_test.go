package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Issue 13.2 and 13.6: flag values out of range and a URL for the API host
// are caught before a job exists; several paths and a single file are
// uploaded as arv-put lays them out.
func TestCLI_startChecksAndInputs(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	base := t.TempDir()
	for f, content := range map[string]string{"run1/a.txt": "a", "run1/sub/b.txt": "bb", "run2/c.txt": "ccc", "sheet.csv": "x,y\n"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(base, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(base, f), []byte(content), 0o644))
	}
	state := t.TempDir()
	env := append(os.Environ(), "ARVADOS_API_HOST=https://"+cl.APIHost+"/", "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	noJob := func() {
		t.Helper()
		matches, _ := filepath.Glob(filepath.Join(state, "arv-upload", "*.db"))
		assert.Empty(t, matches, "a refused start leaves no job")
	}
	for _, args := range [][]string{
		{"--threads", "0"}, {"--threads", "-1"}, {"--replication", "0"}, {"--retry-for", "-1s"},
	} {
		r := runCLI(ctx, t, bin, env, append(append([]string{"start"}, args...), filepath.Join(base, "run1"))...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, args[0])
		noJob()
	}
	r := runCLI(ctx, t, bin, env, "start", filepath.Join(base, "missing"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "missing: ")
	assert.NotContains(t, r.stderr, "is not a directory")
	noJob()
	r = runCLI(ctx, t, bin, append(env, "ARVADOS_API_HOST=http://"+cl.APIHost), "start", filepath.Join(base, "run1"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "HTTPS")
	noJob()
	// A refused token and an owner that does not exist fail before a job.
	r = runCLI(ctx, t, bin, append(env, "ARVADOS_API_TOKEN=v2/zzzzz-gj3su-000000000000000/nope"), "start", filepath.Join(base, "run1"))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refused the token")
	noJob()
	for _, args := range [][]string{{"--storage-classes", "nope"}, {"--replication", "99"}} {
		r = runCLI(ctx, t, bin, env, append(append([]string{"start"}, args...), filepath.Join(base, "run1"))...)
		assert.Equal(t, 2, r.code, r.stderr)
		assert.Contains(t, r.stderr, args[1])
		noJob()
	}
	for _, o := range []string{"foo", "zzzzz-j7d0g-000000000000000"} {
		r = runCLI(ctx, t, bin, env, "start", "--project-uuid", o, filepath.Join(base, "run1"))
		assert.Equal(t, 2, r.code, r.stderr)
		assert.Contains(t, r.stderr, o)
		noJob()
	}

	c := cl.Client(cl.UserToken)
	files := func(uuid string) map[string]string {
		coll, err := c.GetCollection(ctx, strings.TrimSpace(uuid))
		require.NoError(t, err)
		m, err := arvados.ParseManifest(coll.ManifestText)
		require.NoError(t, err)
		out := map[string]string{}
		keep := keepclient.NewKeep(c, keepclient.KeepOptions{})
		for _, f := range m.Files {
			var b []byte
			for _, s := range f.Segments {
				data, err := keep.Get(ctx, s.Locator)
				require.NoError(t, err)
				b = append(b, data[s.Offset:s.Offset+s.Length]...)
			}
			out[f.Path] = string(b)
		}
		return out
	}
	// ARVADOS_API_HOST given as https://host:port/ works (stripped).
	r = runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", "several", "--name", "several",
		filepath.Join(base, "run1"), filepath.Join(base, "run2")+"/", filepath.Join(base, "sheet.csv"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]string{"run1/a.txt": "a", "run1/sub/b.txt": "bb", "c.txt": "ccc", "sheet.csv": "x,y\n"}, files(r.stdout))

	r = runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", "one-file", filepath.Join(base, "sheet.csv"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]string{"sheet.csv": "x,y\n"}, files(r.stdout))

	// One directory: its contents are the collection, as before.
	r = runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", "one-dir", filepath.Join(base, "run1"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]string{"a.txt": "a", "sub/b.txt": "bb"}, files(r.stdout))
}

// Issue 13.4: --progress json is pure NDJSON on stdout (every line parses,
// the last has the outcome and the collection), and --progress-file gets
// the same records whatever the display.
func TestCLI_progressNDJSON(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	writeTree(t, src, 7)
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())
	records := func(text string) []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &m), "not JSON: %q", line)
			out = append(out, m)
		}
		require.NotEmpty(t, out)
		return out
	}
	r := runCLI(ctx, t, bin, env, "start", "--progress", "json", "--progress-interval", "100ms", "--job", "nd", src)
	require.Equal(t, 0, r.code, r.stderr)
	recs := records(r.stdout)
	last := recs[len(recs)-1]
	assert.Equal(t, "done", last["outcome"])
	assert.Regexp(t, `^zzzzz-4zz18-`, last["collection_uuid"])
	for _, rec := range recs[:len(recs)-1] {
		assert.NotContains(t, rec, "outcome")
	}
	assert.NotContains(t, r.stderr, `{"job"`, "no JSON on stderr")

	file := filepath.Join(t.TempDir(), "progress.ndjson")
	r = runCLI(ctx, t, bin, env, "start", "--progress", "none", "--progress-file", file, "--job", "nd2", src)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}\n$`, r.stdout, "the UUID alone on stdout")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	recs = records(string(b))
	assert.Equal(t, "done", recs[len(recs)-1]["outcome"])

	// A run that fails inside the job (a name Arvados would change)
	// ends with a failed record.
	require.NoError(t, os.WriteFile(filepath.Join(src, "bad\xff"), []byte("x"), 0o644))
	r = runCLI(ctx, t, bin, env, "start", "--progress", "json", "--job", "nd3", src)
	assert.Equal(t, 1, r.code)
	recs = records(r.stdout)
	assert.Equal(t, "failed", recs[len(recs)-1]["outcome"])
	assert.NotEmpty(t, recs[len(recs)-1]["error"])
}

// Issue 13.5: list shows the most recently active job first; prune
// removes finished jobs' journals (--older-than: those idle that long);
// the collections stay.
func TestCLI_listAndPrune(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	state := t.TempDir()
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	for _, job := range []string{"old", "new"} {
		r := runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", job, src)
		require.Equal(t, 0, r.code, r.stderr)
	}
	sd := filepath.Join(state, "arv-upload")
	past := time.Now().Add(-48 * time.Hour)
	for _, suffix := range []string{".db", ".status.json", ".job.json"} {
		os.Chtimes(filepath.Join(sd, "old"+suffix), past, past)
	}
	r := runCLI(ctx, t, bin, env, "list")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	assert.True(t, strings.HasPrefix(lines[1], "new "), "most recent first: %q", r.stdout)
	assert.True(t, strings.HasPrefix(lines[2], "old "), r.stdout)

	r = runCLI(ctx, t, bin, env, "prune", "--older-than", "24h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "1 finished job(s) removed")
	_, err = os.Stat(filepath.Join(sd, "old.db"))
	assert.True(t, os.IsNotExist(err), "old pruned")
	_, err = os.Stat(filepath.Join(sd, "new.db"))
	assert.NoError(t, err, "new kept: not idle for 24h")
	r = runCLI(ctx, t, bin, env, "prune")
	require.Equal(t, 0, r.code, r.stderr)
	r = runCLI(ctx, t, bin, env, "list")
	assert.Contains(t, r.stderr, "No jobs")
}

// Issue 13.7: --version, exit codes in --help, completion of job names and
// of --progress values.
func TestCLI_versionHelpCompletion(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	state := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(state, "arv-upload"), 0o700))
	for _, j := range []string{"run-a", "run-b", "other"} {
		require.NoError(t, os.WriteFile(filepath.Join(state, "arv-upload", j+".db"), nil, 0o600))
	}
	env := append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	r := runCLI(ctx, t, bin, env, "--version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^arv-upload version \S+`, r.stdout)
	r = runCLI(ctx, t, bin, env, "--help")
	assert.Contains(t, r.stdout, "Exit codes: 0 done")
	assert.Contains(t, r.stdout, "settings.conf")
	assert.Contains(t, r.stdout, "XDG_STATE_HOME")
	r = runCLI(ctx, t, bin, env, "__complete", "resume", "run")
	assert.Equal(t, []string{"run-a", "run-b"}, strings.Split(strings.TrimSpace(r.stdout), "\n")[:2])
	assert.NotContains(t, r.stdout, "other")
	r = runCLI(ctx, t, bin, env, "__complete", "start", "--progress", "")
	for _, v := range []string{"auto", "bar", "json", "summary", "none"} {
		assert.Contains(t, r.stdout, v+"\n")
	}
}

// Issue 13.5: `abort` from another window: the running side says it was
// aborted (not "interrupted; resume"), and the job is gone.
func TestCLI_abortFromAnotherProcess(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	writeTree(t, src, 9)
	state := t.TempDir()
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	aborted := make(chan runResult, 1)
	code, out := runUntilDo(t, bin, env, func(*exec.Cmd) { go func() { aborted <- runCLI(ctx, t, bin, env, "abort", "gone") }() },
		func(st status) bool { return st.BlocksStored >= 1 },
		"start", "--progress", "json", "--job", "gone", "--threads", "1", "--bwlimit", "10M", src)
	assert.Equal(t, 130, code, out)
	assert.Contains(t, out, "aborted by `arv-upload abort`")
	assert.NotContains(t, out, "continue with `arv-upload resume gone`")
	abort := <-aborted
	require.Equal(t, 0, abort.code, abort.stderr)
	left, _ := filepath.Glob(filepath.Join(state, "arv-upload", "gone.*"))
	assert.Empty(t, left)
}

// Issue 13.5: a directory being uploaded is not started a second time;
// the message names the running job.
func TestCLI_secondStartOfARunningTree(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	writeTree(t, src, 10)
	state := t.TempDir()
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	second := make(chan runResult, 1)
	code, out := runUntilDo(t, bin, env, func(c *exec.Cmd) {
		go func() {
			r := runCLI(ctx, t, bin, env, "start", "--progress", "none", filepath.Join(src, "."))
			c.Process.Signal(syscall.SIGINT)
			second <- r
		}()
	}, func(st status) bool { return st.BlocksStored >= 1 },
		"start", "--progress", "json", "--job", "first", "--threads", "1", "--bwlimit", "10M", src)
	assert.Equal(t, 130, code, out)
	r := <-second
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "is being uploaded by job first")
	jobs, _ := filepath.Glob(filepath.Join(state, "arv-upload", "*.db"))
	assert.Len(t, jobs, 1, "no second job")
}

// Issue 13.2: resume may change what applies when the collection is made:
// the name, the project, the properties.
func TestCLI_resumeChangesFinishOptions(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	c := cl.Client(cl.UserToken)
	var project arvados.Group
	require.NoError(t, c.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "runs", "group_class": "project"}}, &project))
	src := t.TempDir()
	writeTree(t, src, 11)
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())
	code, out := runUntil(t, bin, env, syscall.SIGINT, func(st status) bool { return st.BlocksStored >= 1 },
		"start", "--progress", "json", "--job", "change", "--name", "old name", "--threads", "1", "--bwlimit", "10M", src)
	require.Equal(t, 130, code, out)
	r := runCLI(ctx, t, bin, env, "resume", "--progress", "none", "--name", "new name", "--project-uuid", project.UUID,
		"--property", "run=9", "change")
	require.Equal(t, 0, r.code, r.stderr)
	coll, err := c.GetCollection(ctx, strings.TrimSpace(r.stdout))
	require.NoError(t, err)
	assert.Equal(t, "new name", coll.Name)
	assert.Equal(t, project.UUID, coll.OwnerUUID)
	assert.Equal(t, map[string]any{"run": "9"}, coll.Properties)

	r = runCLI(ctx, t, bin, env, "resume", "--name", "too late", "change")
	assert.Equal(t, 0, r.code, "a finished job: nothing to do")
}
