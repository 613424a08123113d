package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// benchChildEnv, when set in the environment of this test binary, makes it
// run the proxy described by the variable's JSON (childConfig) instead of
// the tests, so that a benchmark can measure the proxy's memory alone.
const benchChildEnv = "ARV_UPLOAD_PROXY_BENCH_CHILD"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(benchChildEnv); cfg != "" {
		if err := runProxyChild(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "proxy child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childConfig is what the benchmark's proxy process runs with: our API
// server and keepstores in the parent, the proxy's defaults otherwise.
type childConfig struct {
	APIHost      string   `json:"api_host"`
	ServiceToken string   `json:"service_token"`
	Keepstores   []string `json:"keepstores"`
	SpoolDir     string   `json:"spool_dir"`
}

// runProxyChild serves the proxy on 127.0.0.1, prints "ADDR host:port" on
// stdout, and stops when stdin closes.
func runProxyChild(raw string) error {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	api, err := keepclient.NewClient(keepclient.Config{APIHost: cfg.APIHost, Scheme: "http", Token: cfg.ServiceToken})
	if err != nil {
		return err
	}
	services := keepclient.ServicesFromEnv(strings.Join(cfg.Keepstores, " "))
	for i := range services {
		services[i].ServiceType = "disk"
	}
	hc := &http.Client{Transport: ViaTransport(nil), Timeout: 300 * time.Second}
	px, err := New(Options{
		API: api, Keep: keepclient.NewKeep(api, keepclient.KeepOptions{Services: services, HTTPClient: hc}),
		SpoolDir: cfg.SpoolDir, ManagementToken: "mgmt-token",
	})
	if err != nil {
		return err
	}
	if err := px.Start(context.Background()); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: px, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
	return px.Close()
}

// procStatus returns a field of /proc/<pid>/status in KiB.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkProxyMemory2x drives a proxy with its default limits (16 PUTs in
// progress, 4 per user) at twice its concurrency: 32 PUTs at once, from 8
// users, of 64 MiB blocks, and of blocks of 1-64 MiB (random sizes, as an
// uploader's last blocks and small-file packs make them). The proxy runs
// in its own process (this test binary, see TestMain), our API server and
// keepstores in this one, so its peak RSS (VmHWM) and peak anonymous RSS
// are the proxy's alone; they are reported against the documented bound of
// 16 x 64 MiB of block buffers.
func BenchmarkProxyMemory2x(b *testing.B) {
	b.Run("64MiB", func(b *testing.B) {
		benchProxyMemory(b, func(*rand.Rand) int { return arvados.BlockSize })
	})
	b.Run("1-64MiB", func(b *testing.B) {
		benchProxyMemory(b, func(r *rand.Rand) int { return (1 + r.IntN(64)) << 20 })
	})
}

func benchProxyMemory(b *testing.B, size func(*rand.Rand) int) {
	c := newRealCluster(b, nil, nil)
	var tokens []string
	for i := range 8 {
		_, tok := c.newUser(b, fmt.Sprintf("bench%d", i))
		tokens = append(tokens, tok)
	}
	var stores []string
	for _, d := range c.disks {
		stores = append(stores, d.URL())
	}
	cfg, _ := json.Marshal(childConfig{
		APIHost: c.svc.APIHost(), ServiceToken: c.api.SystemRootToken(), Keepstores: stores, SpoolDir: b.TempDir(),
	})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+string(cfg))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		b.Fatalf("proxy child did not start: %q %v", line, err)
	}
	pid := cmd.Process.Pid

	// Distinct blocks: one random base, a different first 8 bytes each;
	// bodies are read from the base, not copied.
	const puts = 2 * DefaultMaxConcurrent
	base := randomBlock(42, arvados.BlockSize)
	type block struct {
		prefix [8]byte
		size   int
		hash   string
	}
	r := rand.New(rand.NewPCG(7, 7))
	var seq uint64
	newBlocks := func() []block {
		blocks := make([]block, puts)
		for i := range blocks {
			seq++
			bl := &blocks[i]
			binary.LittleEndian.PutUint64(bl.prefix[:], seq)
			bl.size = size(r)
			h := md5.New()
			h.Write(bl.prefix[:])
			h.Write(base[8:bl.size])
			bl.hash = hex.EncodeToString(h.Sum(nil))
		}
		return blocks
	}
	put := func(i int, bl block) error {
		for try := 0; ; try++ {
			body := io.MultiReader(bytes.NewReader(bl.prefix[:]), bytes.NewReader(base[8:bl.size]))
			req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/"+bl.hash, body)
			if err != nil {
				return err
			}
			req.ContentLength = int64(bl.size)
			req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
			req.Header.Set("X-Keep-Desired-Replicas", "1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				return nil
			case resp.StatusCode == http.StatusServiceUnavailable && try < 20:
				time.Sleep(time.Second) // queue timeout on a slow machine: retry as a client would
			default:
				return fmt.Errorf("PUT %d: %d %s", i, resp.StatusCode, msg)
			}
		}
	}

	var peakAnon atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := procStatus(pid, "RssAnon"); v > peakAnon.Load() {
				peakAnon.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var total int64
	for b.Loop() {
		b.StopTimer()
		blocks := newBlocks()
		b.StartTimer()
		var wg sync.WaitGroup
		errs := make(chan error, puts)
		for i, bl := range blocks {
			total += int64(bl.size)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- put(i, bl)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	close(stop)
	<-sampled
	const bound = DefaultMaxConcurrent * arvados.BlockSize >> 20
	hwm := procStatus(pid, "VmHWM") >> 10
	anon := peakAnon.Load() >> 10
	b.ReportMetric(float64(total)/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(hwm), "peak-RSS-MiB")
	b.ReportMetric(float64(anon), "peak-anon-MiB")
	b.ReportMetric(float64(bound), "buffer-bound-MiB")
	b.Logf("proxy at 2x its concurrency (%d PUTs at once): peak RSS %d MiB, peak anonymous %d MiB; block buffers bounded to %d MiB",
		puts, hwm, anon, bound)
}
