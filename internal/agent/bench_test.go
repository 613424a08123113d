package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// Benchmarks of the upload engine alone: the real bbolt journal, a real
// tree on disk, and a Keep that discards blocks, so what is measured is
// walking, planning, journaling, reading and hashing.

const (
	benchBigFiles   = 4
	benchBigSize    = 128 << 20
	benchSmallFiles = 20000
	benchSmallSize  = 4 << 10
)

// discardKeep is a BlockWriter that stores nothing. It does not hash the
// data again (the agent already has); it returns a locator of the signed
// form hash+size+A<signature>@<expiry> so the engine handles it like a
// real one.
type discardKeep struct{ bytes atomic.Int64 }

func (k *discardKeep) PutBlock(_ context.Context, data []byte, hash string) (string, int, error) {
	k.bytes.Add(int64(len(data)))
	return fmt.Sprintf("%s+%d+A%040x@%08x", hash, len(data), 0xbe7c4, 0x7fffffff), 1, nil
}

// benchRoot holds the trees, generated once per process and shared by all
// iterations and -count runs (the page cache is warm after the first); it
// is removed by TestMain.
var benchRoot struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot.dir != "" {
		os.RemoveAll(benchRoot.dir)
	}
	os.Exit(code)
}

// benchTree returns a directory holding n files of size bytes of seeded
// random data, in subdirectories of 1000 files, generating it on first use.
func benchTree(b *testing.B, name string, n, size int) (dir string, total int64) {
	b.Helper()
	benchRoot.once.Do(func() {
		benchRoot.dir, benchRoot.err = os.MkdirTemp("", "arv-upload-agent-bench-")
	})
	if benchRoot.err != nil {
		b.Fatal(benchRoot.err)
	}
	dir = filepath.Join(benchRoot.dir, name)
	total = int64(n) * int64(size)
	// The marker sits beside the tree so that it is not uploaded.
	done := dir + ".complete"
	if _, err := os.Stat(done); err == nil {
		return dir, total
	}
	rng := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(size >> 10)})
	buf := make([]byte, min(size, 8<<20))
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		f, err := os.Create(filepath.Join(sub, fmt.Sprintf("f%06d", i)))
		if err != nil {
			b.Fatal(err)
		}
		for left := size; left > 0; left -= len(buf) {
			p := buf[:min(left, len(buf))]
			rng.Read(p)
			if _, err := f.Write(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir, total
}

// cpuTime is the CPU time (user and system, every thread) the process has
// used. The machine these benchmarks run on is shared, so wall time swings
// with the load; CPU time per file much less.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since start per iteration (it
// includes the untimed journal opening and closing, a few ms).
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/1e6/float64(b.N), "cpu-ms/op")
}

// newBenchUploader opens a fresh journal for dir in b.TempDir().
func newBenchUploader(b *testing.B, dir string, keep agent.BlockWriter) (*agent.Uploader, *store.Journal) {
	b.Helper()
	j, err := store.Open(filepath.Join(b.TempDir(), "journal.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := j.SetMeta(agent.JobMeta{Job: "b", Dir: dir, Options: agent.Options{Threads: 2}}); err != nil {
		b.Fatal(err)
	}
	up, err := agent.New(agent.Config{Journal: j, Keep: keep})
	if err != nil {
		b.Fatal(err)
	}
	return up, j
}

// benchUpload times scanning and uploading dir as Run does (the upload
// beside the plan); opening and closing the journal is not timed.
func benchUpload(b *testing.B, dir string, total int64) {
	ctx := context.Background()
	keep := &discardKeep{}
	b.SetBytes(total)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		up, j := newBenchUploader(b, dir, keep)
		b.StartTimer()
		if err := up.ScanAndUpload(ctx); err != nil { // the upload runs beside the plan, as in Run
			b.Fatal(err)
		}
		b.StopTimer()
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	// Random data leaves nothing to deduplicate: every byte is sent once.
	if got, want := keep.bytes.Load(), total*int64(b.N); got != want {
		b.Fatalf("sent %d bytes to Keep, want %d", got, want)
	}
}

func BenchmarkUpload_bigFiles(b *testing.B) {
	dir, total := benchTree(b, "big", benchBigFiles, benchBigSize)
	benchUpload(b, dir, total)
}

func BenchmarkUpload_smallFiles(b *testing.B) {
	dir, total := benchTree(b, "small", benchSmallFiles, benchSmallSize)
	benchUpload(b, dir, total)
	b.ReportMetric(float64(benchSmallFiles)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkPlan_smallFiles measures scanning and planning alone, which is
// mostly the cost of journaling one record per file.
func BenchmarkPlan_smallFiles(b *testing.B) {
	dir, _ := benchTree(b, "small", benchSmallFiles, benchSmallSize)
	ctx := context.Background()
	keep := &discardKeep{}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		up, j := newBenchUploader(b, dir, keep)
		b.StartTimer()
		if _, err := up.Plan(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	b.ReportMetric(float64(benchSmallFiles)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkManifest_smallFiles measures the finish's pass over the journal
// of 20,000 files that writes the finished collection's manifest (PDH,
// size, the copy for Keep).
func BenchmarkManifest_smallFiles(b *testing.B) {
	dir, _ := benchTree(b, "small", benchSmallFiles, benchSmallSize)
	ctx := context.Background()
	up, j := newBenchUploader(b, dir, &discardKeep{})
	defer j.Close()
	if err := up.ScanAndUpload(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := up.MeasureManifest(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
