package proxy

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
)

// benchPut PUTs 64 MiB blocks through the proxy to real keepstores on
// 127.0.0.1 (fsync'd writes to the test's temporary directories) at the
// given replication, a new block each time (its md5, the client's work,
// is timed too, as in BenchmarkProxyPut64MiB), and reports MB/s and allocations. The
// sub-benchmarks compare the proxy hashing every body itself (md5) with
// leaving it to the keepstores (no-md5), with a retry copy (the default
// when one is free) and through a window only (window).
func benchPut(b *testing.B, replicas int) {
	c := newCluster(b, 3, nil)
	data := randomBlock(99, arvados.BlockSize)
	hdr := map[string]string{"X-Keep-Desired-Replicas": strconv.Itoa(replicas)}
	n := uint64(0)
	put := func(b *testing.B) {
		n++
		binary.LittleEndian.PutUint64(data, n)
		code, _, body := proxyPut(b, c.proxyTS.URL, "/"+arvados.HashOf(data), data, hdr)
		if code != 200 {
			b.Fatalf("status %d: %s", code, body)
		}
	}
	for _, v := range []struct {
		name   string
		md5    bool
		copies int
	}{{"md5", true, 1}, {"no-md5", false, 1}, {"window-md5", true, 0}, {"window-no-md5", false, 0}} {
		b.Run(v.name, func(b *testing.B) {
			c.proxy.verifyMD5 = v.md5
			c.proxy.copies = make(chan struct{}, max(0, v.copies))
			put(b) // buffers made here are not counted
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				put(b)
			}
		})
	}
}

func BenchmarkPut_Replicas1(b *testing.B) { benchPut(b, 1) }
func BenchmarkPut_Replicas2(b *testing.B) { benchPut(b, 2) }
