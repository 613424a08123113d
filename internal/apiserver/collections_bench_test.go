package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
)

// bigManifest is the manifest of a tree of dirs directories of perDir
// files of fileSize bytes each, as arv-upload writes it: the files in
// order, packed into 64 MiB blocks, each stream naming the blocks its
// files use. sign turns a block's locator into the one sent.
func bigManifest(dirs, perDir int, fileSize int64, sign func(string) string) string {
	const blockSize = 64 << 20
	total := int64(dirs*perDir) * fileSize
	var locs []string
	for off := int64(0); off < total; off += blockSize {
		n := min(blockSize, total-off)
		locs = append(locs, sign(fmt.Sprintf("%032x+%d", off/blockSize+1, n)))
	}
	var b strings.Builder
	pos := int64(0)
	for d := 0; d < dirs; d++ {
		start, end := pos, pos+int64(perDir)*fileSize
		first, last := start/blockSize, (max(end, start+1)-1)/blockSize
		fmt.Fprintf(&b, "./dir%03d", d)
		for i := first; i <= last; i++ {
			b.WriteString(" " + locs[i])
		}
		for f := 0; f < perDir; f++ {
			fmt.Fprintf(&b, " %d:%d:file%05d.dat", pos-first*blockSize, fileSize, f)
			pos += fileSize
		}
		b.WriteString("\n")
	}
	return b.String()
}

// BenchmarkServer_createBigCollection is arv-upload's last call of an
// upload (issue 15): POST /arvados/v1/collections with the whole signed
// manifest, through the real HTTP server and bbolt store, the response
// without its manifest (select), as the uploader asks. Each create has a
// name of its own, as the uploader's; the store starts empty.
func BenchmarkServer_createBigCollection(b *testing.B) {
	for _, files := range []int{20_000, 200_000} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			benchCreate(b, files/1000, 1000, "")
		})
	}
}

// BenchmarkServer_updateBigCollection is the same manifest sent by PUT to
// an existing (empty, partial) collection, as an upload into a slot.
func BenchmarkServer_updateBigCollection(b *testing.B) {
	b.Run("files=20000", func(b *testing.B) { benchCreate(b, 20, 1000, "update") })
}

func benchCreate(b *testing.B, dirs, perDir int, mode string) {
	ctx := context.Background()
	s, err := Open(Options{DataDir: b.TempDir()})
	require.NoError(b, err)
	ts := httptest.NewServer(s)
	b.Cleanup(func() { ts.Close(); s.Close() })
	srv := ts.URL
	_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(b, err)
	exp := time.Now().Add(time.Hour)
	text := bigManifest(dirs, perDir, 4096, func(loc string) string {
		return arvados.SignLocator(loc, tok, exp, arvados.DefaultBlobSigningTTL, s.SigningKey())
	})
	mt, err := json.Marshal(text)
	require.NoError(b, err)
	sel := "?select=" + `["uuid","owner_uuid","name","portable_data_hash"]`
	call := func(method, path string, body []byte) map[string]any {
		req, err := http.NewRequest(method, srv+"/arvados/v1/"+path+strings.ReplaceAll(sel, `"`, "%22"), bytes.NewReader(body))
		require.NoError(b, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(b, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		require.Equal(b, http.StatusOK, resp.StatusCode, "%s", raw)
		var out map[string]any
		require.NoError(b, json.Unmarshal(raw, &out))
		return out
	}
	body := func(name string) []byte {
		return []byte(`{"collection":{"manifest_text":` + string(mt) + `,"name":"` + name + `"}}`)
	}
	want := arvados.PortableDataHash(arvados.StripSignatures(text))
	b.ReportMetric(float64(len(text)), "manifest_bytes")
	cpu0 := cpuTime()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("upload %d", i)
		var got map[string]any
		if mode == "update" {
			b.StopTimer()
			slot := call(http.MethodPost, "collections", []byte(`{"collection":{"name":"`+name+`"}}`))
			b.StartTimer()
			got = call(http.MethodPut, "collections/"+slot["uuid"].(string), body(name))
		} else {
			got = call(http.MethodPost, "collections", body(name))
		}
		if got["portable_data_hash"] != want {
			b.Fatalf("portable_data_hash %v, want %s", got["portable_data_hash"], want)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i), "ms/op")
	// The CPU the process spent (server and client, including the untimed
	// slot creates of an update) is steadier than ms/op on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(i), "cpu-ms/op")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
