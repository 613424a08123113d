package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
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

// hashes returns the blocks PUT since the last reset, by hash.
func (p *putCounter) hashes() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]bool{}
	for k := range p.counts {
		_, h, _ := strings.Cut(k, "/")
		out[h] = true
	}
	return out
}

// writeBlockTree makes a tree of nbig files that get a 33 MiB block each,
// then small files packed into one more block.
func writeBlockTree(t *testing.T, root string, seed int64, nbig int) {
	rnd := rand.New(rand.NewSource(seed))
	write := func(rel string, size int) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		buf := make([]byte, size)
		rnd.Read(buf)
		require.NoError(t, os.WriteFile(p, buf, 0o644))
	}
	for i := 0; i < nbig; i++ {
		write(fmt.Sprintf("big/f%d.bin", i), 33<<20)
	}
	for i := 0; i < 30; i++ {
		write(fmt.Sprintf("small/f%02d.txt", i), 1+rnd.Intn(32<<10))
	}
	write("empty", 0)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty dir"), 0o755))
}

// runUntil runs arv-upload with --progress json and sends sig once a
// progress line satisfies stop. It returns the exit code (minus the
// signal if one killed it) and stderr.
func runUntil(t *testing.T, bin string, env []string, sig syscall.Signal, stop func(status) bool, args ...string) (int, string) {
	return runUntilDo(t, bin, env, func(cmd *exec.Cmd) { require.NoError(t, cmd.Process.Signal(sig)) }, stop, args...)
}

// runUntilDo is runUntil with an action of the caller's.
func runUntilDo(t *testing.T, bin string, env []string, act func(*exec.Cmd), stop func(status) bool, args ...string) (int, string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	// stdout (the NDJSON records of --progress json) and stderr (the
	// messages) in one stream, in order.
	stderr, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start())
	w.Close()
	defer stderr.Close()
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	var lines []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	signalled := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var st status
		if !signalled && json.Unmarshal(sc.Bytes(), &st) == nil && stop(st) {
			act(cmd)
			signalled = true
		}
	}
	err = cmd.Wait()
	require.True(t, signalled, "the stop condition never held: %s", strings.Join(lines, "\n"))
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if ee.Sys().(syscall.WaitStatus).Signaled() {
			code = -int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	}
	return code, strings.Join(lines, "\n")
}

// blocksOf returns the data blocks a manifest references, by hash.
func blocksOf(manifest string) map[string]bool {
	out := map[string]bool{}
	for _, tok := range strings.Fields(manifest) {
		if l, err := arvados.ParseLocator(tok); err == nil && l.Size > 0 {
			out[l.Hash] = true
		}
	}
	return out
}

// copyState copies the files of a state directory (XDG_STATE_HOME) into a
// new one and returns it.
func copyState(t *testing.T, from string) string {
	to := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(to, "arv-upload"), 0o700))
	ents, err := os.ReadDir(filepath.Join(from, "arv-upload"))
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, "arv-upload", e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, "arv-upload", e.Name()), b, 0o600))
	}
	return to
}

func withState(env []string, state string) []string {
	return append(append([]string(nil), env...), "XDG_STATE_HOME="+state)
}

// offline points env at an API server that is not there: the damage
// cases share the job's partial collection, and a command that went past
// the damage must not finish the job.
func offline(env []string) []string {
	return append(env, "ARVADOS_API_HOST=127.0.0.1:1")
}

// writtenLength returns the length of path up to its last non-zero byte.
func writtenLength(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return int64(len(bytes.TrimRight(b, "\x00")))
}

// garbageBytes overwrites path from off to its end with seeded random
// bytes.
func garbageBytes(t *testing.T, path string, off int64) {
	info, err := os.Stat(path)
	require.NoError(t, err)
	buf := make([]byte, info.Size()-off)
	rand.New(rand.NewSource(off)).Read(buf)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// spoil makes every JSON value in path that starts with prefix invalid,
// as bit rot would: its opening brace becomes '#'. The file keeps its
// length and its bbolt structure.
func spoil(t *testing.T, path, prefix string) {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	n := bytes.Count(b, []byte(prefix))
	require.Positive(t, n, "%q is in the journal", prefix)
	b = bytes.ReplaceAll(b, []byte(prefix), append([]byte("#"), prefix[1:]...))
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// damagedJobSetup is a half-finished job: started, interrupted with
// Ctrl-C once a block was stored (the partial collection, saved then, is
// its last checkpoint), resumed and killed with -9 once another block was
// stored. Blocks of 33 MiB at 16 MB/s leave two seconds to stop it
// between blocks, and at least one big block is never stored.
type damagedJobSetup struct {
	cl      *devcluster.Cluster
	counter *putCounter
	bin     string
	env     []string // without XDG_STATE_HOME
	state   string   // the job's XDG_STATE_HOME
	src     string
	refPDH  string
	// stored is every block PUT for the job before the kill.
	stored  map[string]bool
	partial string
	nblocks int // data blocks of the tree
}

const damagedJob1 = "half"

func setupDamagedJob(t *testing.T) *damagedJobSetup {
	ctx := context.Background()
	s := &damagedJobSetup{bin: arvUploadBinary(t), counter: &putCounter{counts: map[string]int{}}, nblocks: 4}
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true, WrapKeepstore: s.counter.wrap})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	s.cl = cl
	s.src = t.TempDir()
	writeBlockTree(t, s.src, 31, s.nblocks-1)
	s.env = append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "HOME="+t.TempDir())
	api := cl.Client(cl.UserToken)

	ref := runCLI(ctx, t, s.bin, withState(s.env, t.TempDir()), "start", "--progress", "none", "--job", "reference", s.src)
	require.Equal(t, 0, ref.code, "uninterrupted upload: %s", ref.stderr)
	refColl, err := api.GetCollection(ctx, strings.TrimSpace(ref.stdout))
	require.NoError(t, err)
	s.refPDH = refColl.PortableDataHash
	s.counter.reset()

	s.state = t.TempDir()
	env := withState(s.env, s.state)
	// --bwlimit: about two seconds a block, time enough to stop it between blocks.
	code, out := runUntil(t, s.bin, env, syscall.SIGINT, func(st status) bool { return st.BlocksStored >= 1 },
		"start", "--progress", "json", "--job", damagedJob1, "--threads", "1", "--bwlimit", "16M", s.src)
	require.Equal(t, 130, code, out)
	r := runCLI(ctx, t, s.bin, env, "status", "--json", damagedJob1)
	require.Equal(t, 0, r.code, r.stderr)
	var st status
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.NotEmpty(t, st.PartialUUID, "Ctrl-C saved the partial collection")
	s.partial = st.PartialUUID
	checkpointed := st.BlocksStored

	code, out = runUntil(t, s.bin, env, syscall.SIGKILL, func(st status) bool { return st.BlocksStored > checkpointed },
		"resume", "--progress", "json", "--bwlimit", "16M", damagedJob1)
	require.Equal(t, -int(syscall.SIGKILL), code, "killed before it finished: %s", out)
	s.stored = s.counter.hashes()
	return s
}

// TestCLI_damagedJournal damages the journal of a half-finished job in
// every way the issue lists, then rebuilds it. Each gives one message that names the job,
// says that what is in Keep is safe and what to run; never a panic, a
// stack trace, a re-created journal or a job without a name; status and
// list say "damaged". A garbage status file is not damage of the job:
// status tells from the journal that the killed job is not running.
func TestCLI_damagedJournal(t *testing.T) {
	s := setupDamagedJob(t)
	ctx := context.Background()
	job := damagedJob1
	page := int64(os.Getpagesize())
	db := func(state string) string { return filepath.Join(state, "arv-upload", job+".db") }
	tests := []struct {
		name     string
		damage   func(t *testing.T, state string)
		noRecord bool // the job record is lost too
	}{
		{"zeroLength", func(t *testing.T, state string) { require.NoError(t, os.Truncate(db(state), 0)) }, false},
		{"garbagePages", func(t *testing.T, state string) { garbageBytes(t, db(state), 2*page) }, false},
		{"halfTruncated", func(t *testing.T, state string) {
			// Half of what is written: bbolt makes the file larger than
			// its pages, and cutting only that (zeros) does no harm.
			require.NoError(t, os.Truncate(db(state), writtenLength(t, db(state))/2))
		}, false},
		{"garbageRecords", func(t *testing.T, state string) {
			spoil(t, db(state), `{"path":`)
			spoil(t, db(state), `{"seq":`)
		}, false},
		{"garbageMeta", func(t *testing.T, state string) { spoil(t, db(state), `{"job":"`+job+`"`) }, false},
		{"garbagePagesAndNoRecord", func(t *testing.T, state string) {
			garbageBytes(t, db(state), 2*page)
			require.NoError(t, os.Remove(filepath.Join(state, "arv-upload", job+".job.json")))
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := copyState(t, s.state)
			env := offline(withState(s.env, state))
			tc.damage(t, state)
			damaged, err := os.ReadFile(db(state))
			require.NoError(t, err)

			r := runCLI(ctx, t, s.bin, env, "resume", "--progress", "none", job)
			assert.Equal(t, 1, r.code, r.stderr)
			assert.Empty(t, r.stdout)
			msg := r.stderr
			assert.Contains(t, msg, "arv-upload: job "+job+": journal "+db(state)+" is damaged: ")
			assert.Contains(t, msg, "What is already stored in Keep is safe: partial collection "+s.partial)
			if tc.noRecord {
				assert.Contains(t, msg, "run `arv-upload start --rebuild --job "+job+" [the options it was started with] "+s.src+"`")
				r := runCLI(ctx, t, s.bin, env, "resume", "--rebuild", job)
				assert.Equal(t, 1, r.code, r.stderr)
				assert.Contains(t, r.stderr, "Run `arv-upload start --rebuild --job "+job+" [the options it was started with] DIR` instead")
			} else {
				assert.Contains(t, msg, "Run `arv-upload resume --rebuild "+job+"`")
			}
			for _, bad := range []string{"panic", "goroutine", "lstat", "resumable"} {
				assert.NotContains(t, msg, bad)
			}
			assert.Equal(t, 3, strings.Count(msg, "\n"), "one message: %s", msg)

			r = runCLI(ctx, t, s.bin, env, "status", job)
			assert.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, "job:    "+job+" (damaged)")
			assert.Contains(t, r.stdout, "run `arv-upload resume --rebuild "+job+"`")
			r = runCLI(ctx, t, s.bin, env, "list", "--json")
			require.Equal(t, 0, r.code, r.stderr)
			var all []status
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &all))
			require.Len(t, all, 1, "no invented job")
			assert.Equal(t, job, all[0].Job)
			assert.Equal(t, "damaged", all[0].State)
			assert.NotContains(t, r.stderr, "panic")

			after, err := os.ReadFile(db(state))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(damaged, after), "the damaged journal is left as it is (%d bytes, was %d)", len(after), len(damaged))
		})
	}

	t.Run("garbageStatusFile", func(t *testing.T) {
		state := copyState(t, s.state)
		env := offline(withState(s.env, state))
		path := filepath.Join(state, "arv-upload", job+".status.json")
		st, err := readStatusFile(path)
		require.NoError(t, err)
		require.Equal(t, "running", st.State, "the killed run's last word")
		garbageBytes(t, path, 10)
		for _, args := range [][]string{{"status", "--json", job}, {"list", "--json"}} {
			r := runCLI(ctx, t, s.bin, env, args...)
			require.Equal(t, 0, r.code, r.stderr)
			out := strings.TrimSpace(r.stdout)
			if args[0] == "list" {
				out = strings.TrimSuffix(strings.TrimPrefix(out, "["), "]")
			}
			var st status
			require.NoError(t, json.Unmarshal([]byte(out), &st), r.stdout)
			assert.Equal(t, job, st.Job)
			assert.Equal(t, "interrupted", st.State, "%v: a job killed with -9 is not running", args)
			assert.Equal(t, s.partial, st.PartialUUID)
		}
	})

	// Damage while a run uses the journal: the run stops with the same
	// message (and the status says so), not with a panic.
	t.Run("damagedWhileRunning", func(t *testing.T) {
		job := "half3"
		state := t.TempDir()
		env := withState(s.env, state)
		dbPath := filepath.Join(state, "arv-upload", job+".db")
		code, out := runUntilDo(t, s.bin, env, func(*exec.Cmd) { garbageBytes(t, dbPath, 2*page) },
			func(st status) bool { return st.BlocksStored >= 1 },
			"start", "--progress", "json", "--job", job, "--threads", "1", "--bwlimit", "16M", s.src)
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, "arv-upload: job "+job+": journal "+dbPath+" is damaged: ")
		// The partial collection exists from the start (empty until the
		// first checkpoint), so the message names it.
		assert.Contains(t, out, "What is already stored in Keep is safe")
		assert.Contains(t, out, "Run `arv-upload resume --rebuild "+job+"`")
		for _, bad := range []string{"panic", "goroutine", "resumable"} {
			assert.NotContains(t, out, bad)
		}
		r := runCLI(ctx, t, s.bin, env, "status", job)
		assert.Contains(t, r.stdout, "job:    "+job+" (damaged)")
	})

	// Last, as it finishes the job: the rebuild, after garbage pages.
	// What is sent again, counted on the keepstores, is exactly the
	// blocks the partial collection (the last checkpoint) does not hold;
	// the collection is the one an uninterrupted run makes.
	t.Run("rebuild", func(t *testing.T) {
		api := s.cl.Client(s.cl.UserToken)
		env := withState(s.env, s.state)
		dbPath := filepath.Join(s.state, "arv-upload", job+".db")
		garbageBytes(t, dbPath, 2*int64(os.Getpagesize()))

		part, err := api.GetCollection(ctx, s.partial)
		require.NoError(t, err)
		checkpointed := blocksOf(part.ManifestText)

		s.counter.reset()
		r := runCLI(ctx, t, s.bin, env, "resume", "--rebuild", "--progress", "none", "--bwlimit", "0", job)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, fmt.Sprintf("the %d blocks partial collection %s holds are not sent again", len(checkpointed), s.partial))
		coll, err := api.GetCollection(ctx, strings.TrimSpace(r.stdout))
		require.NoError(t, err)
		assert.Equal(t, s.refPDH, coll.PortableDataHash, "the collection an uninterrupted run makes")
		assert.NotEqual(t, s.partial, coll.UUID, "the finished collection is a new one")
		_, err = api.GetCollection(ctx, s.partial)
		assert.True(t, keepclient.IsStatus(err, http.StatusNotFound), "the partial collection is trashed: %v", err)

		all := blocksOf(coll.ManifestText)
		require.Len(t, all, s.nblocks)
		sent := s.counter.hashes()
		var resent, afterCheckpoint, notStored, extra []string
		for h := range all {
			switch {
			case checkpointed[h]:
				assert.False(t, sent[h], "block %s, held by the partial collection, sent again", h)
			case s.stored[h]:
				afterCheckpoint = append(afterCheckpoint, h)
				assert.True(t, sent[h], "block %s, stored after the checkpoint, sent", h)
			default:
				notStored = append(notStored, h)
				assert.True(t, sent[h], "block %s, never stored, sent", h)
			}
		}
		for h := range sent {
			if all[h] && s.stored[h] {
				resent = append(resent, h)
			} else if !all[h] {
				extra = append(extra, h)
			}
		}
		assert.Len(t, extra, 1, "besides data blocks, only the manifest block is sent")
		assert.ElementsMatch(t, afterCheckpoint, resent, "the blocks sent again are those stored after the last checkpoint")
		require.NotEmpty(t, afterCheckpoint, "the job stored blocks after its last checkpoint")
		t.Logf("data blocks %d: %d in the partial collection (not sent), %d stored after the checkpoint (sent again), %d never stored (sent)",
			len(all), len(checkpointed), len(afterCheckpoint), len(notStored))

		kept, _ := filepath.Glob(dbPath + ".damaged-*")
		assert.Len(t, kept, 1, "the damaged journal is kept")
		r = runCLI(ctx, t, s.bin, env, "status", "--json", job)
		require.Equal(t, 0, r.code, r.stderr)
		var st status
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
		assert.Equal(t, "done", st.State)

		// Damage after the job finished: nothing to rebuild.
		garbageBytes(t, dbPath, 2*int64(os.Getpagesize()))
		r = runCLI(ctx, t, s.bin, env, "resume", job)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "The job finished: collection "+coll.UUID+" ("+s.refPDH+") is safe and complete; nothing is left to do.")
		r = runCLI(ctx, t, s.bin, env, "resume", "--rebuild", job)
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "there is nothing to rebuild")
		r = runCLI(ctx, t, s.bin, env, "list")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Regexp(t, `(?m)^`+job+` +done `, r.stdout)
	})

	// The job record and the status file are lost too: the options are
	// given again to start --rebuild, and the partial collection is found
	// by its name.
	t.Run("rebuildWithoutRecord", func(t *testing.T) {
		job := "half2"
		api := s.cl.Client(s.cl.UserToken)
		state := t.TempDir()
		env := withState(s.env, state)
		code, out := runUntil(t, s.bin, env, syscall.SIGINT, func(st status) bool { return st.BlocksStored >= 1 },
			"start", "--progress", "json", "--job", job, "--threads", "1", "--bwlimit", "16M", s.src)
		require.Equal(t, 130, code, out)
		r := runCLI(ctx, t, s.bin, env, "status", "--json", job)
		require.Equal(t, 0, r.code, r.stderr)
		var st status
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
		require.NotEmpty(t, st.PartialUUID)
		part, err := api.GetCollection(ctx, st.PartialUUID)
		require.NoError(t, err)
		checkpointed := blocksOf(part.ManifestText)
		require.NotEmpty(t, checkpointed)

		dir := filepath.Join(state, "arv-upload")
		garbageBytes(t, filepath.Join(dir, job+".db"), 2*int64(os.Getpagesize()))
		require.NoError(t, os.Remove(filepath.Join(dir, job+".job.json")))
		require.NoError(t, os.Remove(filepath.Join(dir, job+".status.json")))
		r = runCLI(ctx, t, s.bin, env, "resume", job)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "run `arv-upload start --rebuild --job "+job+" [the options it was started with] DIR`")

		s.counter.reset()
		r = runCLI(ctx, t, s.bin, env, "start", "--rebuild", "--job", job, "--progress", "none", "--threads", "1", s.src)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, fmt.Sprintf("the %d blocks partial collection %s holds are not sent again", len(checkpointed), st.PartialUUID))
		coll, err := api.GetCollection(ctx, strings.TrimSpace(r.stdout))
		require.NoError(t, err)
		assert.Equal(t, s.refPDH, coll.PortableDataHash)
		assert.NotEqual(t, st.PartialUUID, coll.UUID)
		sent := s.counter.hashes()
		for h := range blocksOf(coll.ManifestText) {
			assert.Equal(t, !checkpointed[h], sent[h], "block %s sent (held by the partial collection: %v)", h, checkpointed[h])
		}

		// Abort with a damaged journal, the status file lost: the job's
		// finished collection is left alone; the job's files go.
		garbageBytes(t, filepath.Join(dir, job+".db"), 2*int64(os.Getpagesize()))
		require.NoError(t, os.Remove(filepath.Join(dir, job+".status.json")))
		r = runCLI(ctx, t, s.bin, env, "abort", job)
		require.Equal(t, 0, r.code, r.stderr)
		again, err := api.GetCollection(ctx, coll.UUID)
		require.NoError(t, err, "the finished collection is not trashed")
		assert.Equal(t, s.refPDH, again.PortableDataHash)
		left, err := filepath.Glob(filepath.Join(dir, job+".*"))
		require.NoError(t, err)
		assert.Empty(t, left, "abort removes the job's files, the damaged journal kept by the rebuild too")
	})
}
