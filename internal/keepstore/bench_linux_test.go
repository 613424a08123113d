package keepstore

// Ways to write a 64 MiB block durably, compared on the volume's disk (issue
// 15 section 2; figures in doc.go). Every variant reads the block from a
// reader and md5s it, as a PUT does, and ends with the block under its final
// name and the directory synced. Set KS_BENCH_DIR to measure another disk
// than the one under t.TempDir(). cpu-ms/op is the process's user+system
// time per block: less noisy than ns/op on a shared machine.
//
//	go test -run '^$' -bench DirVolumePut_ -benchtime 8x -count 5 ./keepstore/

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

type writeVariant func(dir, name string, src io.Reader) error

func benchVariant(b *testing.B, fn writeVariant) { benchBytes(b, fn, arvados.BlockSize) }

// benchBytes runs fn b.N times; each run stores perOp bytes.
func benchBytes(b *testing.B, fn writeVariant, perOp int64) {
	dir := b.TempDir()
	if d := os.Getenv("KS_BENCH_DIR"); d != "" {
		var err error
		dir, err = os.MkdirTemp(d, "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	data := randomBlock(1, arvados.BlockSize)
	b.SetBytes(perOp)
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("%032x", i)
		if err := fn(dir, name, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(filepath.Join(dir, name))
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func finish(f *os.File, dir, name string, sync func(*os.File) error) error {
	if err := sync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func fsyncFile(f *os.File) error { return f.Sync() }

func bufferedWhole(sync func(*os.File) error) writeVariant {
	buf := make([]byte, arvados.BlockSize)
	return func(dir, name string, src io.Reader) error {
		n, _, err := readBody(src, buf)
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, "tmp-")
		if err != nil {
			return err
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		return finish(f, dir, name, sync)
	}
}

func directWhole(dir, name string, src io.Reader) error {
	return directWholeBuf(alignedBuffer(arvados.BlockSize))(dir, name, src)
}

func directWholeBuf(buf []byte) writeVariant {
	return func(dir, name string, src io.Reader) error {
		n, _, err := readBody(src, buf)
		if err != nil {
			return err
		}
		f, err := createDirect(filepath.Join(dir, "tmp-"+name))
		if err != nil {
			return err
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		return finish(f, dir, name, fdatasync)
	}
}

func streamBuffered(window int, sfr bool) writeVariant {
	buf := make([]byte, window)
	return func(dir, name string, src io.Reader) error {
		f, err := os.CreateTemp(dir, "tmp-")
		if err != nil {
			return err
		}
		h := md5.New()
		var off int64
		for {
			n, err := io.ReadFull(src, buf)
			h.Write(buf[:n])
			if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
			if sfr && n > 0 {
				syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), 2 /* WRITE */, 0, 0)
			}
			off += int64(n)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
		h.Sum(nil)
		return finish(f, dir, name, fdatasync)
	}
}

// streamDirect reads windows, hashes them and hands them to a writer
// goroutine (depth windows in flight) that writes them with O_DIRECT.
func streamDirect(window, depth int) writeVariant {
	bufs := make([][]byte, depth)
	for i := range bufs {
		bufs[i] = alignedBuffer(window)
	}
	return func(dir, name string, src io.Reader) error {
		f, err := createDirect(filepath.Join(dir, "tmp-"+name))
		if err != nil {
			return err
		}
		free := make(chan []byte, depth)
		for _, b := range bufs {
			free <- b
		}
		full := make(chan []byte, depth)
		done := make(chan error, 1)
		go func() {
			var werr error
			for b := range full {
				if werr == nil {
					if len(b)%directAlign != 0 {
						pad := (len(b) + directAlign - 1) / directAlign * directAlign
						st, _ := f.Stat()
						_, werr = f.Write(b[:pad])
						if werr == nil {
							werr = f.Truncate(st.Size() + int64(len(b)))
						}
					} else {
						_, werr = f.Write(b)
					}
				}
				free <- b[:cap(b)]
			}
			done <- werr
		}()
		h := md5.New()
		var rerr error
		for {
			buf := <-free
			n, err := io.ReadFull(src, buf)
			h.Write(buf[:n])
			full <- buf[:n]
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				rerr = err
				break
			}
		}
		close(full)
		if err := <-done; err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
		h.Sum(nil)
		return finish(f, dir, name, fdatasync)
	}
}

// streamProduction is the chosen path: DirVolume.Create, ReadFrom through
// the server's bodyReader (md5 on the window), Commit.
func streamProduction(dir, name string, src io.Reader) error {
	v := &DirVolume{root: dir, writeData: writeAll, openDirect: createDirect}
	w, err := v.Create(context.Background(), name)
	if err != nil {
		return err
	}
	body := &bodyReader{r: src, h: md5.New()}
	if _, err := w.ReadFrom(body); err != nil {
		w.Abort()
		return err
	}
	body.sum()
	return w.Commit()
}

// (a) today's path before streaming: the whole body in a buffer, then
// write, fsync, rename, fsync the directory.
func BenchmarkDirVolumePut_BufferedFsync(b *testing.B) {
	benchVariant(b, bufferedWhole(fsyncFile))
}

// (b) as (a) with fdatasync.
func BenchmarkDirVolumePut_BufferedFdatasync(b *testing.B) {
	benchVariant(b, bufferedWhole(fdatasync))
}

// (c) the whole body in an aligned buffer, one O_DIRECT write, fdatasync.
func BenchmarkDirVolumePut_DirectFdatasync(b *testing.B) {
	benchVariant(b, directWholeBuf(alignedBuffer(arvados.BlockSize)))
}

// (d) streaming through 1 MiB windows, buffered writes, fdatasync.
func BenchmarkDirVolumePut_StreamBuffered1MiB(b *testing.B) {
	benchVariant(b, streamBuffered(1<<20, false))
}

// (d) with sync_file_range(WRITE) after each window to start writeback.
func BenchmarkDirVolumePut_StreamBufferedSFR1MiB(b *testing.B) {
	benchVariant(b, streamBuffered(1<<20, true))
}

// (d) streaming with O_DIRECT: window size x windows in flight.
func BenchmarkDirVolumePut_StreamDirect1MiBx1(b *testing.B) {
	benchVariant(b, streamDirect(1<<20, 1))
}
func BenchmarkDirVolumePut_StreamDirect1MiBx4(b *testing.B) {
	benchVariant(b, streamDirect(1<<20, 4))
}
func BenchmarkDirVolumePut_StreamDirect4MiBx2(b *testing.B) {
	benchVariant(b, streamDirect(4<<20, 2))
}
func BenchmarkDirVolumePut_StreamDirect8MiBx2(b *testing.B) {
	benchVariant(b, streamDirect(8<<20, 2))
}

// The chosen path, as the server runs it (1 MiB x 4, O_DIRECT).
func BenchmarkDirVolumePut_Stream(b *testing.B) {
	benchVariant(b, streamProduction)
}

// (e) group commit would batch the renames and directory fsyncs of
// concurrent blocks. This measures what there is to win: the chosen path
// with 2 and 4 blocks written at once (MB/s is the total).
func BenchmarkDirVolumePut_StreamConcurrent(b *testing.B) {
	for _, c := range []int{2, 4} {
		b.Run(fmt.Sprint(c), func(b *testing.B) {
			benchBytes(b, func(dir, name string, src io.Reader) error {
				data, _ := io.ReadAll(src)
				errs := make(chan error, c)
				for j := range c {
					go func() {
						errs <- streamProduction(dir, fmt.Sprintf("%s%d", name[:31], j), bytes.NewReader(data))
					}()
				}
				var err error
				for range c {
					if e := <-errs; e != nil {
						err = e
					}
				}
				return err // the files stay until the end of the run
			}, int64(c)*arvados.BlockSize)
		})
	}
}

// The cost of what group commit would batch: a 4 KiB block through the
// chosen path is almost only create, fdatasync, rename and directory fsync.
func BenchmarkDirVolumePut_Commit4KiB(b *testing.B) {
	dir := b.TempDir()
	data := randomBlock(2, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := streamProduction(dir, fmt.Sprintf("%032x", i), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDirVolumePut_HashOnly is the floor: read and md5 the body, no
// disk at all.
func BenchmarkDirVolumePut_HashOnly(b *testing.B) {
	buf := make([]byte, 1<<20)
	benchVariant(b, func(dir, name string, src io.Reader) error {
		h := md5.New()
		_, err := io.CopyBuffer(h, src, buf)
		h.Sum(nil)
		return err
	})
}
