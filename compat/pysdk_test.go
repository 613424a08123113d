package compat

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
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
)

// sdkDir is the real Python SDK, beside the repository (shared/).
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../shared/arvados-python-sdk")
	require.NoError(t, err)
	probe := exec.Command(filepath.Join(dir, "bin", "arvados-python"), "-c", "import googleapiclient, pycurl, arvados")
	if out, err := probe.CombinedOutput(); err != nil {
		msg := fmt.Sprintf("the Arvados Python SDK does not run here (%v: %s); install the Debian packages its README lists (.ci/run does)", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// pyCluster starts a dev cluster as `arv-server dev` runs it (TLS, proxy)
// and returns it with the environment of a client outside it.
func pyCluster(t *testing.T) (*devcluster.Cluster, []string) {
	t.Helper()
	cl, err := devcluster.Start(context.Background(), devcluster.Options{Dir: t.TempDir(), TLS: true, Proxy: true})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	env := append(os.Environ(), "HOME="+t.TempDir(), "ARVADOS_API_HOST="+cl.APIHost,
		"ARVADOS_API_TOKEN="+cl.UserToken, "ARVADOS_API_HOST_INSECURE=1")
	return cl, env
}

// run runs one of the SDK's commands and returns its stdout.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(sdkDir(t), "bin", name), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "%s %s:\n%s", name, strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// writeTree writes a tree of one file over a Keep block (64 MiB), a few
// small files, an empty file and a name that needs escaping.
func writeTree(t *testing.T) string {
	root := t.TempDir()
	rnd := rand.New(rand.NewSource(1))
	write := func(rel string, n int) {
		b := make([]byte, n)
		rnd.Read(b)
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	write("big.bin", 64<<20+4096)
	for i := 0; i < 20; i++ {
		write(fmt.Sprintf("small/f%02d.txt", i), 100+i*37)
	}
	write("empty", 0)
	write("with space/a:b.txt", 10)
	return root
}

// The Python SDK builds its client from our discovery document and talks
// to our API server; arv-put uploads a tree through the proxy, arv-get
// and CollectionReader read it back, and the arv CLI gets the collection.
func TestPythonSDK_putGetRead(t *testing.T) {
	_, env := pyCluster(t)
	src := writeTree(t)

	me := run(t, env, "arvados-python", "-c", `import arvados; print(arvados.api("v1").users().current().execute()["uuid"])`)
	assert.Regexp(t, `^zzzzz-tpzed-[0-9a-z]{15}\n$`, me)

	uuid := strings.TrimSpace(run(t, env, "arv-put", "--no-cache", "--no-progress", "--name", "from arv-put", src+"/"))
	require.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}$`, uuid)

	out := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Mkdir(out, 0o755))
	run(t, env, "arv-get", "-r", "--no-progress", uuid+"/", out+"/")
	sameTree(t, src, out)

	// CollectionReader reads every file and reports its size.
	listing := run(t, env, "arvados-python", "-c", `
import arvados, hashlib, sys
c = arvados.collection.CollectionReader(sys.argv[1])
def walk(coll, prefix):
    for name, item in sorted(coll.items()):
        if isinstance(item, arvados.collection.RichCollectionBase):
            walk(item, prefix + name + "/")
        else:
            with coll.open(name, "rb") as f:
                print(prefix + name, hashlib.md5(f.read()).hexdigest())
walk(c, "")
`, uuid)
	var want []string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(src, p)
			want = append(want, fmt.Sprintf("%s %x", rel, md5sum(b)))
		}
		return nil
	})
	assert.ElementsMatch(t, want, strings.Split(strings.TrimSpace(listing), "\n"))

	got := run(t, env, "arvados-python", "-m", "arvados.commands.arvcli", "collection", "get", "--uuid", uuid)
	assert.Contains(t, got, `"uuid": "`+uuid+`"`)
	assert.Contains(t, got, `"name": "from arv-put"`)
}

// sameTree checks that two directories hold the same files.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(want, p)
		if d.IsDir() {
			return nil
		}
		w, _ := os.ReadFile(p)
		g, err := os.ReadFile(filepath.Join(got, rel))
		if assert.NoError(t, err, rel) {
			assert.True(t, bytes.Equal(w, g), "content of %s", rel)
		}
		return nil
	})
}

func md5sum(b []byte) [16]byte { return md5.Sum(b) }

// arv-put --project-uuid puts the collection in a project (it reads the
// project with groups().get first); the arv CLI's `group list` and
// `group contents` show the project and what it holds, and a project
// shared with another user by a permission link shows to that user.
func TestPythonSDK_projects(t *testing.T) {
	cl, env := pyCluster(t)
	ctx := context.Background()
	owner := cl.Client(cl.UserToken)
	var p arvados.Group
	require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "sequencing runs", "group_class": "project"}}, &p))
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "reads.fastq"), []byte("@r1\nACGT\n+\nIIII\n"), 0o644))

	uuid := strings.TrimSpace(run(t, env, "arv-put", "--no-cache", "--no-progress", "--project-uuid", p.UUID, "--name", "run 9", src+"/"))
	require.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}$`, uuid)
	got, err := owner.GetCollection(ctx, uuid)
	require.NoError(t, err)
	assert.Equal(t, p.UUID, got.OwnerUUID)

	arv := func(env []string, args ...string) map[string]any {
		t.Helper()
		out := run(t, env, "arvados-python", append([]string{"-m", "arvados.commands.arvcli"}, args...)...)
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &v), out)
		return v
	}
	uuids := func(l map[string]any) []string {
		var out []string
		for _, it := range l["items"].([]any) {
			out = append(out, it.(map[string]any)["uuid"].(string))
		}
		return out
	}
	list := arv(env, "group", "list")
	assert.Equal(t, "arvados#groupList", list["kind"])
	assert.Equal(t, []string{p.UUID}, uuids(list))
	assert.Equal(t, "sequencing runs", list["items"].([]any)[0].(map[string]any)["name"])
	contents := arv(env, "group", "contents", "--uuid", p.UUID)
	assert.Equal(t, []string{uuid}, uuids(contents))

	// Shared with another user, who sees it with `group list` and reads the
	// collection with arv-get.
	other, otherTok, err := cl.API.CreateUser(ctx, arvados.User{FullName: "Other", IsActive: true})
	require.NoError(t, err)
	otherEnv := append(append([]string{}, env...), "ARVADOS_API_TOKEN="+otherTok)
	assert.Empty(t, uuids(arv(otherEnv, "group", "list")))
	_, err = owner.CreateLink(ctx, map[string]any{"link_class": "permission", "name": "can_read", "tail_uuid": other.UUID, "head_uuid": p.UUID})
	require.NoError(t, err)
	assert.Equal(t, []string{p.UUID}, uuids(arv(otherEnv, "group", "list")))
	out := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Mkdir(out, 0o755))
	run(t, otherEnv, "arv-get", "-r", "--no-progress", uuid+"/", out+"/")
	sameTree(t, src, out)
}

// arv-put interrupted with SIGINT and run again resumes through our proxy:
// its cache's signed locators pass the HEAD check (PROTOCOL 11.4), and the
// blocks it recorded are not sent again.
func TestPythonSDK_arvPutResumesThroughProxy(t *testing.T) {
	var mu sync.Mutex
	puts := map[string]int{} // block hash -> PUTs on keepstore 0
	cl, err := devcluster.Start(context.Background(), devcluster.Options{Dir: t.TempDir(), TLS: true, Proxy: true,
		WrapKeepstore: func(i int, h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if i == 0 && r.Method == http.MethodPut && len(r.URL.Path) > 32 {
					mu.Lock()
					puts[r.URL.Path[1:33]]++
					mu.Unlock()
				}
				h.ServeHTTP(w, r)
			})
		}})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	env := append(os.Environ(), "HOME="+t.TempDir(), "ARVADOS_API_HOST="+cl.APIHost,
		"ARVADOS_API_TOKEN="+cl.UserToken, "ARVADOS_API_HOST_INSECURE=1", "ARV_PUT_CHECKPOINT_SECONDS=1")
	stored := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for h, n := range puts {
			out[h] = n
		}
		return out
	}
	src := t.TempDir()
	rnd := rand.New(rand.NewSource(3))
	for i := 0; i < 3; i++ {
		b := make([]byte, 64<<20)
		rnd.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("part%d.bin", i)), b, 0o644))
	}

	first := exec.Command(filepath.Join(sdkDir(t), "bin", "arv-put"), "--no-progress", "--name", "resumed", src+"/")
	first.Env = env
	var errb bytes.Buffer
	first.Stderr = &errb
	require.NoError(t, first.Start())
	deadline := time.Now().Add(2 * time.Minute)
	for len(stored()) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if len(stored()) < 2 {
		first.Process.Kill()
		first.Wait() // errb is written until then
		t.Fatalf("arv-put stored no two blocks in 2 minutes; stderr:\n%s", errb.String())
	}
	time.Sleep(3 * time.Second) // its cache is saved every second
	require.NoError(t, first.Process.Signal(syscall.SIGINT))
	first.Wait()
	before := stored()

	uuid := strings.TrimSpace(run(t, env, "arv-put", "--no-progress", "--name", "resumed", src+"/"))
	require.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}$`, uuid)
	after := stored()
	resent := 0
	for h, n := range before {
		if after[h] > n {
			resent++
		}
	}
	// Blocks arv-put had recorded in its cache are not sent again; those
	// in flight at the interrupt (after its last save) are, as upstream.
	// Had the HEAD check failed ("Resume cache contains invalid
	// signature"), it would have started over and sent them all.
	t.Logf("blocks stored before the interrupt: %d, sent again: %d", len(before), resent)
	assert.Less(t, resent, len(before), "the resume skipped the blocks in its cache")
	assert.LessOrEqual(t, resent, 2, "at most the blocks in flight (arv-put's threads)")

	out := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Mkdir(out, 0o755))
	run(t, env, "arv-get", "-r", "--no-progress", uuid+"/", out+"/")
	sameTree(t, src, out)
}
