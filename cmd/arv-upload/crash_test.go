package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/internal/jobs"
)

// putCounter counts block PUTs per (keepstore, hash) on the server side, so
// a test can tell how many blocks a resumed upload sent again.
type putCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (p *putCounter) wrap(i int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			p.mu.Lock()
			p.counts[fmt.Sprintf("%d/%s", i, strings.TrimPrefix(r.URL.Path, "/")[:min(32, len(r.URL.Path)-1)])]++
			p.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// duplicates returns how many PUTs beyond the first each block received,
// summed over blocks and keepstores.
func (p *putCounter) duplicates() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.counts {
		n += c - 1
	}
	return n
}

// total returns the number of PUTs counted.
func (p *putCounter) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.counts {
		n += c
	}
	return n
}

func (p *putCounter) reset() {
	p.mu.Lock()
	p.counts = map[string]int{}
	p.mu.Unlock()
}

// arvUploadBinary compiles arv-upload once per test binary run, with the
// race detector when the tests have it.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func arvUploadBinary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "arv-upload-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "arv-upload")
		args := []string{"build", "-o", buildOnce.path}
		if raceEnabled {
			args = append(args, "-race") // a race in the CLI fails the test (exit 66)
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildOnce.err)
	return buildOnce.path
}

// writeTree makes a deterministic tree: a few files spanning block
// boundaries and many small files packed together.
func writeTree(t *testing.T, root string, seed int64) {
	rnd := rand.New(rand.NewSource(seed))
	write := func(rel string, size int) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		buf := make([]byte, size)
		rnd.Read(buf)
		require.NoError(t, os.WriteFile(p, buf, 0o644))
	}
	write("big/a.bin", arvados.BlockSize+1)
	write("big/b.bin", 40<<20)
	write("big/c.bin", 3<<20)
	for i := 0; i < 300; i++ {
		write(fmt.Sprintf("small/d%02d/f %03d:x.txt", i%7, i), 1+rnd.Intn(64<<10))
	}
	write("empty", 0)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty dir"), 0o755))
}

type runResult struct {
	stdout, stderr string
	code           int
}

func runCLI(ctx context.Context, t *testing.T, bin string, env []string, args ...string) runResult {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return runResult{out.String(), errb.String(), code}
}

// TestCrashResume runs arv-upload as a child process, kills it with SIGKILL
// at seeded random moments, resumes until done, and checks that the result
// is the collection an uninterrupted run makes and that at most the blocks
// in flight were sent again.
func TestCrashResume(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	counter := &putCounter{counts: map[string]int{}}
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true, WrapKeepstore: counter.wrap})
	require.NoError(t, err)
	defer cl.Close()

	src := t.TempDir()
	writeTree(t, src, 42)
	state := t.TempDir()
	env := append(os.Environ(),
		"ARVADOS_API_HOST="+cl.APIHost,
		"ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1",
		"XDG_STATE_HOME="+state,
		"HOME="+t.TempDir(),
	)
	jobDir := jobs.Dir{Path: filepath.Join(state, "arv-upload")}
	api := cl.Client(cl.UserToken)

	ref := runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", "reference", "--name", "ref", src)
	require.Equal(t, 0, ref.code, "reference upload: %s", ref.stderr)
	refColl, err := api.GetCollection(ctx, strings.TrimSpace(ref.stdout))
	require.NoError(t, err)

	const threads = 2
	rnd := rand.New(rand.NewSource(7))
	for round := 0; round < 4; round++ {
		t.Run(fmt.Sprintf("kill%d", round), func(t *testing.T) {
			counter.reset()
			job := fmt.Sprintf("crash%d", round)
			// New content per round so the keepstores do not already hold it.
			dir := t.TempDir()
			writeTree(t, dir, int64(100+round))
			want := runCLI(ctx, t, bin, append(env, "XDG_STATE_HOME="+t.TempDir()), "start", "--progress", "none", "--job", "want", "--threads", fmt.Sprint(threads), dir)
			require.Equal(t, 0, want.code, want.stderr)
			wantColl, err := api.GetCollection(ctx, strings.TrimSpace(want.stdout))
			require.NoError(t, err)
			counter.reset()

			kills := 0
			args := []string{"start", "--progress", "none", "--job", job, "--threads", fmt.Sprint(threads), dir}
			var final runResult
			// Kill up to 4 times, then let the last resume finish.
			for attempt := 0; attempt <= 4; attempt++ {
				cmd := exec.Command(bin, args...)
				cmd.Env = env
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				require.NoError(t, cmd.Start())
				delay := time.Duration(100+rnd.Intn(1500)) * time.Millisecond
				if attempt == 4 {
					delay = 5 * time.Minute
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					code := 0
					if ee, ok := err.(*exec.ExitError); ok {
						code = ee.ExitCode()
					}
					final = runResult{out.String(), errb.String(), code}
				case <-time.After(delay):
					cmd.Process.Signal(syscall.SIGKILL)
					<-done
					kills++
					// A start killed before it made its job (its
					// pre-checks take a while on a loaded machine)
					// leaves nothing to resume: start again, as a user
					// would.
					if jobDir.Exists(job) {
						args = []string{"resume", "--progress", "none", job}
					}
					continue
				}
				break
			}
			require.Equal(t, 0, final.code, "final run after %d kills: %s", kills, final.stderr)
			got, err := api.GetCollection(ctx, strings.TrimSpace(final.stdout))
			require.NoError(t, err)
			assert.Equal(t, wantColl.PortableDataHash, got.PortableDataHash, "resumed after %d kills", kills)
			// Each kill may lose the blocks in flight: threads uploading plus
			// the one being read, on each of the 2 keepstores, plus the
			// manifest block, which is PUT again by every finishing attempt.
			bound := kills * (threads + 2) * 2
			assert.LessOrEqual(t, counter.duplicates(), bound, "blocks sent again after %d kills", kills)
		})
	}
	assert.NotEmpty(t, refColl.PortableDataHash)
}
