package keepstore

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
)

// BenchmarkPut64MiB measures full-size block PUTs through real HTTP and the
// durable directory write (fsync included). Each iteration stores a new
// block so that the existing-block shortcut is not what is measured; the
// client-side md5 of the next block is outside the timer.
func BenchmarkPut64MiB(b *testing.B) {
	s, err := New(Options{Dir: b.TempDir(), MaxBuffers: 2})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer hs.Close()
	data := randomBlock(1, arvados.BlockSize)
	b.SetBytes(arvados.BlockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		data[0], data[1], data[2], data[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		hash := arvados.HashOf(data)
		b.StartTimer()
		req, _ := http.NewRequest(http.MethodPut, hs.URL+"/"+hash, bytes.NewReader(data))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
