package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// faultRunTimeout bounds one arv-upload run, so that a hang fails the test
// instead of stalling it. Healthy runs of the fault tree take a few seconds;
// the slowest legitimate path (the proxy and the client both exhausting
// their Keep retries) stays well under this.
const faultRunTimeout = 45 * time.Second

// fault decides what happens to one request; next is the real server.
type fault func(w http.ResponseWriter, r *http.Request, next http.Handler)

// faultSwitch passes requests through the current fault, if any, so a test
// can inject a fault into a running cluster and remove it again.
type faultSwitch struct{ f atomic.Pointer[fault] }

func (s *faultSwitch) set(f fault) {
	if f == nil {
		s.f.Store(nil)
		return
	}
	s.f.Store(&f)
}

func (s *faultSwitch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.f.Load(); f != nil {
			(*f)(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// failEveryNthPut answers 503 to every nth block PUT, counted over all the
// keepstores it wraps.
func failEveryNthPut(n int64) fault {
	var count atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && count.Add(1)%n == 0 {
			http.Error(w, "injected: keepstore busy", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// cutPutBody cuts the connection of the PUTs for which cut(n) is true (n
// counts PUTs from 1) once the keepstore has read half of the body: the
// keepstore sees the body end early, as when a client goes away, and the
// client gets no response, only a closed connection.
func cutPutBody(cut func(n int64) bool) fault {
	var count atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodPut || !cut(count.Add(1)) {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &halfBody{r: r.Body, left: r.ContentLength / 2}
		next.ServeHTTP(discardResponse{http.Header{}}, r)
		panic(http.ErrAbortHandler) // net/http closes the connection
	}
}

// halfBody returns the first left bytes of a request body, then the error
// net/http gives a handler whose client disconnected.
type halfBody struct {
	r    io.ReadCloser
	left int64
}

func (b *halfBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *halfBody) Close() error { return b.r.Close() }

// discardResponse swallows what the keepstore answers to a cut request:
// the client must not see it.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}

// outage answers 503 to every PUT for d from the first PUT on, then lets
// them through: keepstores that go away and come back.
func outage(d time.Duration) fault {
	var once sync.Once
	var until time.Time
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut {
			once.Do(func() { until = time.Now().Add(d) })
			if time.Now().Before(until) {
				http.Error(w, "injected: keepstore down", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	}
}

// downAfter lets the first n PUTs through and answers 503 to every later
// one, until the test removes the fault.
func downAfter(n int64) fault {
	var count atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && count.Add(1) > n {
			http.Error(w, "injected: keepstore down", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// failAPI answers status, with an Arvados error body, to the first n
// requests for method and path (n < 0: to all of them).
func failAPI(method, path string, n int64, status int) fault {
	var count atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == method && r.URL.Path == path && (n < 0 || count.Add(1) <= n) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			// No status code in the text: the client must report it.
			fmt.Fprintf(w, `{"errors":["injected fault: %s"]}`, http.StatusText(status))
			return
		}
		next.ServeHTTP(w, r)
	}
}

// writeFaultTree makes a small deterministic tree and returns its content
// by collection path. With big, it has three blocks: one file large enough
// for a block of its own, a packed block of small files and the manifest
// block; without, only the last two, for tests where block count does not
// matter.
func writeFaultTree(t *testing.T, root string, seed int64, big bool) map[string][]byte {
	rnd := rand.New(rand.NewSource(seed))
	want := map[string][]byte{}
	write := func(rel string, size int) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		buf := make([]byte, size)
		rnd.Read(buf)
		require.NoError(t, os.WriteFile(p, buf, 0o644))
		want[rel] = buf
	}
	if big {
		// The smallest file the agent gives a block of its own.
		write("big/a.bin", arvados.BlockSize/2+12345)
	}
	for i := 0; i < 40; i++ {
		write(fmt.Sprintf("small/d%d/f %02d:x.txt", i%3, i), 1+rnd.Intn(64<<10))
	}
	write("empty", 0)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty dir"), 0o755))
	return want
}

// faultCluster is a dev cluster (TLS, with or without the proxy) whose
// keepstores and API server pass every request through a switchable fault,
// and an environment for arv-upload with its own state directory.
type faultCluster struct {
	*devcluster.Cluster
	keep, api faultSwitch
	bin       string
	env       []string
	client    *keepclient.Client
}

func startFaultCluster(t *testing.T, withProxy bool) *faultCluster {
	fc := &faultCluster{bin: arvUploadBinary(t)}
	cl, err := devcluster.Start(context.Background(), devcluster.Options{
		Dir: t.TempDir(), Proxy: withProxy, TLS: true,
		WrapKeepstore: func(_ int, h http.Handler) http.Handler { return fc.keep.wrap(h) },
		WrapAPI:       fc.api.wrap,
	})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	fc.Cluster = cl
	fc.client = cl.Client(cl.UserToken)
	fc.env = append(os.Environ(),
		"ARVADOS_API_HOST="+cl.APIHost,
		"ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1",
		"ARVADOS_KEEP_SERVICES=",
		"XDG_STATE_HOME="+t.TempDir(),
		"HOME="+t.TempDir(),
	)
	return fc
}

// run runs arv-upload and fails the test if it does not exit in time.
func (fc *faultCluster) run(t *testing.T, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRunTimeout)
	defer cancel()
	start := time.Now()
	res := runCLI(ctx, t, fc.bin, fc.env, args...)
	if ctx.Err() != nil {
		t.Fatalf("arv-upload %s still running after %v (hang?); stderr:\n%s", strings.Join(args, " "), faultRunTimeout, res.stderr)
	}
	t.Logf("arv-upload %s: exit %d in %v", args[0], res.code, time.Since(start).Round(time.Millisecond))
	return res
}

// collection returns the collection whose UUID a successful run printed.
func (fc *faultCluster) collection(t *testing.T, res runResult) *arvados.Collection {
	t.Helper()
	coll, err := fc.client.GetCollection(context.Background(), strings.TrimSpace(res.stdout))
	require.NoError(t, err, "collection printed by arv-upload: %q", res.stdout)
	return coll
}

// referencePDH uploads src without faults to a cluster of its own, so that
// the clusters under test start with empty keepstores: a faulty run that
// skipped a block cannot be rescued by the reference run's copy.
func referencePDH(t *testing.T, src string) string {
	fc := startFaultCluster(t, true)
	res := fc.run(t, "start", "--progress", "none", "--job", "reference", src)
	require.Equal(t, 0, res.code, "reference upload: %s", res.stderr)
	pdh := fc.collection(t, res).PortableDataHash
	require.NotEmpty(t, pdh)
	require.NoError(t, fc.Close())
	return pdh
}

// uploadThroughFault runs `start` on src with whatever faults are set. The
// run must either succeed or exit 1 telling the user to run `arv-upload
// resume JOB`; in that case heal removes the faults and the resume must
// succeed. The caller removes the faults after a first run that succeeded. It returns the collection and whether a resume was needed.
func (fc *faultCluster) uploadThroughFault(t *testing.T, job, src string, heal func()) (*arvados.Collection, runResult, bool) {
	t.Helper()
	// --retry-for 0: here a fault ends the run (to be resumed); riding
	// out an outage is TestFault_outageRetried.
	first := fc.run(t, "start", "--progress", "none", "--retry-for", "0", "--job", job, src)
	if first.code == 0 {
		return fc.collection(t, first), first, false
	}
	t.Logf("first run failed:\n%s", first.stderr)
	require.Equal(t, 1, first.code, "a failed upload exits 1; stderr:\n%s", first.stderr)
	assert.Contains(t, first.stderr, "arv-upload resume "+job, "the error says how to go on")
	heal()
	res := fc.run(t, "resume", "--progress", "none", job)
	require.Equal(t, 0, res.code, "resume after the fault is gone; first run said:\n%s\nresume said:\n%s", first.stderr, res.stderr)
	return fc.collection(t, res), first, true
}

// checkStored checks that every block of coll is on every keepstore: the
// dev cluster has two and wants two replicas.
func (fc *faultCluster) checkStored(t *testing.T, coll *arvados.Collection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRunTimeout)
	defer cancel()
	m, err := arvados.ParseManifest(coll.ManifestText)
	require.NoError(t, err)
	for _, u := range fc.KeepstoreURLs {
		keep := keepclient.NewKeep(fc.client, keepclient.KeepOptions{Services: keepclient.ServicesFromEnv(u)})
		done := map[string]bool{}
		for _, f := range m.Files {
			for _, s := range f.Segments {
				if done[s.Locator] {
					continue
				}
				done[s.Locator] = true
				assert.NoError(t, keep.Head(ctx, s.Locator), "block of %q on %s", f.Path, u)
			}
		}
	}
}

// checkContents reads every file of coll back from the keepstores
// (directly: the proxy is write-only) and compares it with want.
func (fc *faultCluster) checkContents(t *testing.T, coll *arvados.Collection, want map[string][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRunTimeout)
	defer cancel()
	keep := keepclient.NewKeep(fc.client, keepclient.KeepOptions{
		Services: keepclient.ServicesFromEnv(strings.Join(fc.KeepstoreURLs, " ")),
	})
	m, err := arvados.ParseManifest(coll.ManifestText)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range m.Files {
		var data []byte
		for _, s := range f.Segments {
			b, err := keep.Get(ctx, s.Locator)
			require.NoError(t, err, "read %s of %q", s.Locator, f.Path)
			require.LessOrEqual(t, s.Offset+s.Length, int64(len(b)), "segment of %q", f.Path)
			data = append(data, b[s.Offset:s.Offset+s.Length]...)
		}
		w, ok := want[f.Path]
		if !assert.True(t, ok, "unexpected file %q", f.Path) {
			continue
		}
		assert.True(t, len(w) == len(data) && string(w) == string(data), "content of %q (%d bytes, want %d)", f.Path, len(data), len(w))
		seen[f.Path] = true
	}
	assert.Len(t, seen, len(want), "every file is in the collection")
	assert.Equal(t, []string{"empty dir"}, m.Dirs, "empty directories")
}

// subtest is a named subtest for runConcurrently.
type subtest struct {
	name string
	run  func(t *testing.T)
}

// runConcurrently runs the subtests all at once and waits for them. They
// spend most of their time in retry back-off, so t.Parallel, which runs
// only GOMAXPROCS tests at a time, would serialize them for nothing.
func runConcurrently(t *testing.T, tests []subtest) {
	var wg sync.WaitGroup
	for _, st := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(st.name, st.run)
		}()
	}
	wg.Wait()
}

// keepstoreFault is one way for keepstores to fail.
type keepstoreFault struct {
	name string
	f    func() fault // a fresh fault (counters at zero) per run
	// mustSucceed: retries alone must cope, no resume allowed.
	mustSucceed bool
	// mustFail: the fault outlasts every retry, so the first run must fail
	// resumably.
	mustFail bool
	// readBack: compare the collection with the source byte for byte (the
	// others check that every block is stored; reading 35 MB back under
	// -race costs about 2 s).
	readBack bool
}

// TestFault_keepstore uploads through keepstores that fail in various ways,
// directly (arv-upload's Keep client sees the faults) and, when listed, with
// the proxy in front of them (its Keep client sees them first). Every run
// must end with the collection a fault-free run makes, at once or after one
// resume, with every block stored. Each case gets a cluster of its own, so
// the cases run concurrently.
func TestFault_keepstore(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	want := writeFaultTree(t, src, 11, true)
	wantPDH := referencePDH(t, src)

	faults := []keepstoreFault{
		{name: "503EveryThirdPut", f: func() fault { return failEveryNthPut(3) }, mustSucceed: true},
		{name: "cutBodyHalfway", f: func() fault { return cutPutBody(func(n int64) bool { return n%3 == 1 }) }, readBack: true},
		{name: "away3s", f: func() fault { return outage(3 * time.Second) }},
	}
	topologies := []struct {
		name   string
		proxy  bool
		faults []keepstoreFault
	}{
		{"direct", false, append(faults,
			// Without the proxy's retries in between, keepstores that stay
			// down make the run fail, quickly; the resume must then finish
			// the job from what the first run stored.
			keepstoreFault{name: "downUntilResume", f: func() fault { return downAfter(2) }, mustFail: true, readBack: true})},
		// Fails now and then under -race: keepclient.Put can return while
		// net/http still reads the block from an attempt whose answer came
		// early (the 503s here), and the proxy then refills that buffer
		// for the next PUT.
		{"proxy", true, faults},
	}
	var tests []subtest
	for _, topo := range topologies {
		for _, c := range topo.faults {
			tests = append(tests, subtest{topo.name + "/" + c.name, func(t *testing.T) {
				fc := startFaultCluster(t, topo.proxy)
				fc.keep.set(c.f())
				job := "fault-" + c.name
				coll, first, resumed := fc.uploadThroughFault(t, job, src, func() { fc.keep.set(nil) })
				fc.keep.set(nil)
				if c.mustSucceed {
					assert.False(t, resumed, "retries should absorb the fault; first run said:\n%s", first.stderr)
				}
				if c.mustFail {
					assert.True(t, resumed, "the first run cannot have stored every block")
				}
				assert.Equal(t, wantPDH, coll.PortableDataHash, "same collection as the fault-free run")
				fc.checkStored(t, coll)
				if c.readBack {
					fc.checkContents(t, coll, want)
				}
			}})
		}
	}
	runConcurrently(t, tests)
}

// TestFault_API uploads while the API server fails: temporarily on
// collection creation (the API client's retries must cope), and with 401
// on users/current, as for a revoked token (the run must fail resumably
// and say why).
func TestFault_API(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	want := writeFaultTree(t, src, 12, false)
	wantPDH := referencePDH(t, src)

	tests := []subtest{{"createCollection503Twice", func(t *testing.T) {
		fc := startFaultCluster(t, true)
		fc.api.set(failAPI(http.MethodPost, "/arvados/v1/collections", 2, http.StatusServiceUnavailable))
		coll, first, resumed := fc.uploadThroughFault(t, "create503", src, func() { fc.api.set(nil) })
		fc.api.set(nil)
		assert.False(t, resumed, "the API client retries 503; first run said:\n%s", first.stderr)
		assert.Equal(t, wantPDH, coll.PortableDataHash)
		fc.checkContents(t, coll, want)
	}}}

	for _, topo := range []struct {
		name  string
		proxy bool
	}{
		{"direct", false},
		// Fails: through the proxy the first error is the proxy's 403 on
		// a block PUT, "could not write sufficient replicas: ... [403]
		// Missing or invalid Authorization header, or method not allowed",
		// which says neither 401 nor token.
		{"proxy", true},
	} {
		tests = append(tests, subtest{"usersCurrent401/" + topo.name, func(t *testing.T) {
			fc := startFaultCluster(t, topo.proxy)
			fc.api.set(failAPI(http.MethodGet, "/arvados/v1/users/current", -1, http.StatusUnauthorized))
			heal := func() {
				fc.api.set(nil)
				if topo.proxy {
					// The proxy remembers a refused token for 2 s (its
					// default AuthFailCacheTTL); a real user would come back
					// with a new token instead.
					time.Sleep(2500 * time.Millisecond)
				}
			}
			// Refused before a job exists (issue 13.2): nothing to
			// resume; the same start works once the token is good.
			first := fc.run(t, "start", "--progress", "none", "--retry-for", "0", "--job", "revoked", src)
			require.Equal(t, 1, first.code, first.stderr)
			assert.Regexp(t, `\b401\b|(?i)\btoken\b`, first.stderr, "the error says the token was refused")
			assert.NotContains(t, first.stderr, "arv-upload resume", "there is no job to resume")
			heal()
			res := fc.run(t, "start", "--progress", "none", "--job", "revoked", src)
			require.Equal(t, 0, res.code, res.stderr)
			coll := fc.collection(t, res)
			assert.Equal(t, wantPDH, coll.PortableDataHash)
			fc.checkStored(t, coll)
		}})
	}
	runConcurrently(t, tests)
}

// Issue 13.1: keepstores that go down mid-upload and come back a few
// seconds later do not end the job: the run says it is retrying (on
// stderr and in `status --json`), waits, and finishes in one go with the
// collection a fault-free run makes.
func TestFault_outageRetried(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	want := writeFaultTree(t, src, 12, true)
	wantPDH := referencePDH(t, src)
	fc := startFaultCluster(t, false)
	fc.keep.set(downAfter(2))
	sawRetrying := make(chan status, 1)
	go func() {
		for i := 0; i < 600; i++ {
			time.Sleep(100 * time.Millisecond)
			r := runCLI(context.Background(), t, fc.bin, fc.env, "status", "--json", "outage")
			var st status
			if r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil && st.Retrying {
				fc.keep.set(nil) // the keepstores are back
				sawRetrying <- st
				return
			}
		}
		fc.keep.set(nil)
		close(sawRetrying)
	}()
	res := fc.run(t, "start", "--progress", "none", "--job", "outage", src)
	require.Equal(t, 0, res.code, res.stderr)
	st, ok := <-sawRetrying
	require.True(t, ok, "status --json never showed the retry; stderr:\n%s", res.stderr)
	assert.Equal(t, "running", st.State)
	assert.NotEmpty(t, st.LastError)
	assert.Positive(t, st.Attempt)
	assert.Contains(t, res.stderr, "retrying in")
	coll := fc.collection(t, res)
	assert.Equal(t, wantPDH, coll.PortableDataHash)
	fc.checkContents(t, coll, want)
}

// Issue 13.1, as the issue asks it: the whole dev cluster (API server,
// keepstores, proxy) stops mid-upload and comes back on the same data
// directory a while later; the one run says it is retrying (status
// --json), then finishes with exit 0 and the collection a fault-free run
// makes. (15 s here; the 90 s changes nothing but the wait.)
func TestFault_clusterStopsAndComesBack(t *testing.T) {
	t.Parallel()
	bin := arvUploadBinary(t)
	ctx := context.Background()
	src := t.TempDir()
	writeBlockTree(t, src, 13, 4) // 5 blocks: the outage comes with most still to send
	wantPDH := referencePDH(t, src)
	dir := t.TempDir()
	start := func() *devcluster.Cluster {
		cl, err := devcluster.Start(ctx, devcluster.Options{Dir: dir, Proxy: true, TLS: true})
		require.NoError(t, err)
		return cl
	}
	var mu sync.Mutex
	cl := start()
	t.Cleanup(func() { mu.Lock(); cl.Close(); mu.Unlock() })
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_TOKEN="+cl.UserToken,
		"ARVADOS_API_HOST_INSECURE=1", "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())
	sawRetry := make(chan status, 1)
	code, out := runUntilDo(t, bin, env, func(*exec.Cmd) {
		mu.Lock()
		require.NoError(t, cl.Close())
		mu.Unlock()
		go func() {
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				r := runCLI(ctx, t, bin, env, "status", "--json", "outage")
				var st status
				if json.Unmarshal([]byte(r.stdout), &st) == nil && st.Retrying {
					select {
					case sawRetry <- st:
					default:
					}
				}
				time.Sleep(500 * time.Millisecond)
			}
			mu.Lock()
			cl = start()
			mu.Unlock()
		}()
	}, func(st status) bool { return st.BlocksStored >= 1 },
		"start", "--progress", "json", "--job", "outage", "--threads", "1", "--bwlimit", "8M", src)
	require.Equal(t, 0, code, out)
	select {
	case st := <-sawRetry:
		assert.Equal(t, "running", st.State)
		assert.NotEmpty(t, st.LastError)
	default:
		t.Errorf("status --json never showed the retry during the outage; output:\n%s", out)
	}
	var last status
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if json.Unmarshal([]byte(lines[i]), &last) == nil && last.CollectionUUID != "" {
			break
		}
	}
	mu.Lock()
	c := cl.Client(cl.UserToken)
	mu.Unlock()
	coll, err := c.GetCollection(ctx, last.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, wantPDH, coll.PortableDataHash)
}
