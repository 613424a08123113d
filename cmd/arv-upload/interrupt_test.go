package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Ctrl-C during an upload: exit 130 with a resume hint, the partial
// collection saved; `status` (another process) shows it; `abort` trashes
// the partial collection and removes the journal.
func TestCLI_interruptStatusAbort(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	writeTree(t, src, 5)
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())

	// --bwlimit keeps the upload slow enough to interrupt half-way.
	cmd := exec.Command(bin, "start", "--progress", "json", "--job", "intr", "--threads", "1", "--bwlimit", "20M", src)
	cmd.Env = env
	// stdout (the NDJSON records of --progress json) and stderr (the
	// messages) in one stream, in order.
	stderr, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start())
	w.Close()
	defer stderr.Close()
	var lines []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	signalled := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var st status
		if !signalled && json.Unmarshal(sc.Bytes(), &st) == nil && st.BlocksStored >= 1 {
			assert.Equal(t, "running", st.State)
			assert.Positive(t, st.FilesTotal)
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			signalled = true
		}
	}
	err = cmd.Wait()
	require.True(t, signalled, "never saw a stored block: %s", strings.Join(lines, "\n"))
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 130, ee.ExitCode())
	assert.Contains(t, strings.Join(lines, "\n"), "interrupted; continue with `arv-upload resume intr`")

	r := runCLI(ctx, t, bin, env, "status", "--json", "intr")
	require.Equal(t, 0, r.code, r.stderr)
	var st status
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	assert.Equal(t, "interrupted", st.State)
	assert.GreaterOrEqual(t, st.BlocksStored, int64(1))
	require.NotEmpty(t, st.PartialUUID, "the partial collection is saved on Ctrl-C")
	api := cl.Client(cl.UserToken)
	part, err := api.GetCollection(ctx, st.PartialUUID)
	require.NoError(t, err)
	assert.Contains(t, part.Name, "partial")

	r = runCLI(ctx, t, bin, env, "status", "intr")
	assert.Contains(t, r.stdout, "partial collection: "+st.PartialUUID)

	r = runCLI(ctx, t, bin, env, "resume", "--bwlimit", "10X", "intr")
	assert.Equal(t, 2, r.code, "a bad flag is a usage error")
	assert.Contains(t, r.stderr, `--bwlimit "10X"`)

	r = runCLI(ctx, t, bin, env, "abort", "intr")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "partial collection "+st.PartialUUID+" trashed")
	_, err = api.GetCollection(ctx, st.PartialUUID)
	assert.True(t, keepclient.IsStatus(err, 404), "trashed: %v", err)
	r = runCLI(ctx, t, bin, env, "list", "--json")
	assert.Equal(t, "[]\n", r.stdout)
}

// --dry-run plans and reports without a journal or a single PUT.
func TestCLI_dryRun(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	counter := &putCounter{counts: map[string]int{}}
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), WrapKeepstore: counter.wrap})
	require.NoError(t, err)
	defer cl.Close()
	src := t.TempDir()
	for _, f := range []string{"a", "b/c", "b/d"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, f), []byte(f), 0o644))
	}
	state := t.TempDir()
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken, "XDG_STATE_HOME="+state, "HOME="+t.TempDir())
	r := runCLI(ctx, t, bin, env, "start", "--dry-run", src)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "dry run: 3 files, 7 B, 1 blocks; nothing uploaded\n", r.stdout)
	assert.Zero(t, counter.total())
	matches, _ := filepath.Glob(filepath.Join(state, "arv-upload", "*.db"))
	assert.Empty(t, matches, "a dry run leaves no job")
}

// An unreadable file stops the job before anything is sent, with a message
// that names the file and says what to do; excluding it works. (As root,
// the CLI runs as nobody so that permissions apply.)
func TestCLI_unreadableFile(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	counter := &putCounter{counts: map[string]int{}}
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true, WrapKeepstore: counter.wrap})
	require.NoError(t, err)
	defer cl.Close()
	open := func(dir string) string {
		require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755)) // the test's own temp root
		require.NoError(t, os.Chmod(dir, 0o777))
		return dir
	}
	src, state, home := open(t.TempDir()), open(t.TempDir()), open(t.TempDir())
	// The binary too must be reachable by nobody.
	exe := filepath.Join(open(t.TempDir()), "arv-upload")
	b, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(exe, b, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "ok.txt"), []byte("fine"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "secret"), []byte("locked"), 0o000))
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken, "ARVADOS_API_HOST_INSECURE=1",
		"XDG_STATE_HOME="+state, "HOME="+home)
	run := func(args ...string) runResult {
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Env = env
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return runResult{out.String(), errb.String(), code}
	}
	// A dry run lists every problem in one pass, and says what to do.
	require.NoError(t, os.WriteFile(filepath.Join(src, "secret2"), []byte("locked"), 0o000))
	r := run("start", "--dry-run", src)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stdout, "2 cannot be read")
	assert.Contains(t, r.stdout, filepath.Join(src, "secret")+": permission denied")
	assert.Contains(t, r.stdout, filepath.Join(src, "secret2")+": permission denied")
	require.NoError(t, os.Remove(filepath.Join(src, "secret2")))

	r = run("start", "--progress", "none", "--job", "locked", "--bwlimit", "1M", src)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, filepath.Join(src, "secret"))
	assert.Contains(t, r.stderr, "permission denied")
	assert.NotContains(t, r.stderr, "open "+filepath.Join(src, "secret")+": open", "said once")
	assert.Contains(t, r.stderr, "--exclude")
	assert.Contains(t, r.stderr, "arv-upload resume locked")
	assert.Zero(t, counter.total(), "nothing sent before the tree is readable")

	// The same job, resumed with the file left out.
	r = run("resume", "--progress", "none", "--exclude", "secret", "--bwlimit", "0", "--threads", "3", "locked")
	require.Equal(t, 0, r.code, r.stderr)
	coll, err := cl.Client(cl.UserToken).GetCollection(ctx, strings.TrimSpace(r.stdout))
	require.NoError(t, err)
	assert.Contains(t, coll.ManifestText, "ok.txt")
	assert.NotContains(t, coll.ManifestText, "secret")
}
