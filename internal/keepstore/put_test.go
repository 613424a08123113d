package keepstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_Put_statuses(t *testing.T) {
	ts := newTestServer(t, Options{StorageClasses: []string{"default", "hot"}})
	foo := []byte("foo")
	fooHash := arvados.HashOf(foo)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		headers            []string
		status             int
		respBody           string
		classes            string
	}{
		{name: "no token, unsigned", path: "/" + fooHash, body: foo, status: 200, respBody: fooHash + "+3\n", classes: "default=1, hot=1"},
		{name: "size hint ignored", path: "/" + fooHash + "+999", body: foo, status: 200, respBody: fooHash + "+3\n"},
		{name: "anything after plus", path: "/" + fooHash + "+Zfoo+K@zzzzz", body: foo, status: 200, respBody: fooHash + "+3\n"},
		{name: "upper-case hash", path: "/" + strings.ToUpper(fooHash), body: foo, status: 400, respBody: "Bad Request\n"},
		{name: "double slash", path: "//" + fooHash, body: foo, status: 400, respBody: "Bad Request\n"},
		{name: "junk after hash", path: "/" + fooHash + "x", body: foo, status: 400, respBody: "Bad Request\n"},
		{name: "post", method: http.MethodPost, path: "/", body: foo, status: 400, respBody: "Bad Request\n"},
		{name: "md5 mismatch", path: "/" + arvados.EmptyHash, body: foo, status: 422,
			respBody: "content hash " + fooHash + " did not match specified locator " + arvados.EmptyHash + "\n"},
		{name: "class not served", path: "/" + fooHash, body: foo, headers: []string{"X-Keep-Storage-Classes: cold"}, status: 507, respBody: "insufficient storage\n"},
		{name: "one class served of two", path: "/" + fooHash, body: foo, headers: []string{"X-Keep-Storage-Classes:  cold , hot,"}, status: 200, classes: "hot=1"},
		{name: "empty block", path: "/" + arvados.EmptyHash, body: []byte{}, status: 200, respBody: arvados.EmptyBlock + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPut
			}
			resp, body := ts.do(t, method, tc.path, tc.body, tc.headers...)
			assert.Equal(t, tc.status, resp.StatusCode, body)
			if tc.respBody != "" {
				assert.Equal(t, tc.respBody, body)
			}
			if tc.status == 200 {
				assert.Equal(t, "1", resp.Header.Get("X-Keep-Replicas-Stored"))
			}
			if tc.classes != "" {
				assert.Equal(t, tc.classes, resp.Header.Get("X-Keep-Storage-Classes-Confirmed"))
			}
		})
	}
}

func TestServer_Put_signing(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := []byte("signed block")
	for _, tc := range []struct {
		name, header, token, other string
	}{
		{"v1 bearer", bearer(testV1Token), testV1Token, testV2Token},
		{"v2 bearer", bearer(testV2Token), testV2Token, testV1Token},
		{"v2 oauth2", "Authorization: OAuth2 " + testV2Token, testV2Token, testV1Token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := ts.put(t, data, tc.header)
			require.True(t, strings.HasPrefix(loc, arvados.LocatorFor(data)+"+A"), loc)
			now := time.Now()
			require.NoError(t, arvados.VerifySignature(loc, tc.token, arvados.DefaultBlobSigningTTL, []byte(testKey), now))
			assert.ErrorIs(t, arvados.VerifySignature(loc, tc.other, arvados.DefaultBlobSigningTTL, []byte(testKey), now), arvados.ErrSignatureInvalid)
			exp := arvados.SignatureExpiry(loc)
			assert.WithinDuration(t, now.Add(arvados.DefaultBlobSigningTTL), exp, time.Minute)
		})
	}
	t.Run("no signing key", func(t *testing.T) {
		ts := newTestServer(t, Options{SigningKey: []byte("-")})
		assert.Equal(t, arvados.LocatorFor(data), ts.put(t, data, bearer(testV2Token)))
	})
}

// rawRequest writes a request by hand on a TCP connection, half-closes it
// after body and returns the response status line and body.
func rawRequest(t *testing.T, url, head string, body []byte) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, head)
	require.NoError(t, err)
	_, err = conn.Write(body)
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer_Put_contentLengthMismatch(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := []byte("0123456789")
	head := fmt.Sprintf("PUT /%s HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n", arvados.HashOf(data))
	status, body := rawRequest(t, ts.URL, head, data)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "content length 10 did not match specified data size 20\n", body)
	assert.Empty(t, listFiles(t, ts.Dir))
}

func TestServer_Put_existingBlock(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := []byte("existing")
	hash := arvados.HashOf(data)
	ts.put(t, data)
	p := filepath.Join(ts.Dir, hash[:3], hash)
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(p, old, old))

	t.Run("same data touches", func(t *testing.T) {
		resp, body := ts.do(t, http.MethodPut, "/"+hash, data)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "1", resp.Header.Get("X-Keep-Replicas-Stored"))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.True(t, fi.ModTime().After(old.Add(30*time.Minute)), "mtime %s", fi.ModTime())
	})
	t.Run("different data is a collision", func(t *testing.T) {
		for _, stored := range []string{"existinG", "existing and more", "exist"} {
			require.NoError(t, os.WriteFile(p, []byte(stored), 0o600))
			resp, body := ts.do(t, http.MethodPut, "/"+hash, data)
			assert.Equal(t, 500, resp.StatusCode, stored)
			assert.Equal(t, "hash collision\n", body)
		}
	})
}

func TestServer_Put_durableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	data := randomBlock(7, 3<<20)
	loc := newTestServer(t, Options{Dir: dir}).put(t, data, bearer(testV2Token))

	ts2 := newTestServer(t, Options{Dir: dir, EnforceSigning: true})
	resp, body := ts2.do(t, http.MethodGet, "/"+loc, nil, bearer(testV2Token))
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, arvados.HashOf(data), arvados.HashOf([]byte(body)))
}

func TestServer_Put_concurrentSameBlock(t *testing.T) {
	ts := newTestServer(t, Options{MaxBuffers: 4})
	data := randomBlock(8, 2<<20)
	var wg sync.WaitGroup
	locs := make([]string, 8)
	for i := range locs {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPut, ts.URL+"/"+arvados.HashOf(data), strings.NewReader(string(data)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				locs[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			locs[i] = fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
		})
	}
	wg.Wait()
	for _, l := range locs {
		assert.Equal(t, "200 "+arvados.LocatorFor(data), l)
	}
	assert.Equal(t, []string{filepath.Join(arvados.HashOf(data)[:3], arvados.HashOf(data))}, listFiles(t, ts.Dir))
	assert.Zero(t, ts.BuffersInUse())
}

// countingSource produces deterministic bytes and counts how many the
// client transport pulled from it.
type countingSource struct {
	limit int64
	n     atomic.Int64
}

func (c *countingSource) Read(p []byte) (int, error) {
	left := c.limit - c.n.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	for i := range p {
		p[i] = byte(i)
	}
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func TestServer_Put_sizeLimits(t *testing.T) {
	ts := newTestServer(t, Options{MaxBuffers: 1})
	t.Run("exactly 64 MiB", func(t *testing.T) {
		data := randomBlock(9, arvados.BlockSize)
		assert.Equal(t, arvados.LocatorFor(data), ts.put(t, data))
	})
	// The server must answer without reading (much) more than 64 MiB + 1:
	// the client's source is 100 MiB, and what the transport pulled from it
	// is at most what the server read plus the socket buffers.
	const body = 100 << 20
	const slack = 16 << 20
	for i, tc := range []struct {
		name          string
		contentLength int64
		maxRead       int64
	}{
		{"64 MiB + 1 declared", arvados.BlockSize + 1, slack},
		{"chunked 100 MiB", -1, arvados.BlockSize + 1 + slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingSource{limit: body}
			if tc.contentLength > 0 {
				src.limit = tc.contentLength
			}
			req, err := http.NewRequest(http.MethodPut, ts.URL+"/"+arvados.EmptyHash, io.NopCloser(src))
			require.NoError(t, err)
			req.ContentLength = tc.contentLength
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(b))
			} else {
				// The server may close the connection while the client
				// still writes; the body size bound below still applies.
				t.Logf("client saw %v", err)
			}
			assert.Less(t, src.n.Load(), tc.maxRead)
			require.Eventually(t, func() bool { return ts.BuffersInUse() == 0 }, 10*time.Second, 10*time.Millisecond)
			assert.Equal(t, i+1, strings.Count(ts.Logs.String(), `"status":413`))
		})
	}
}

func TestServer_Put_cutBodyLeavesNothing(t *testing.T) {
	ts := newTestServer(t, Options{})
	data := randomBlock(10, 1<<20)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	require.NoError(t, err)
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", arvados.HashOf(data), len(data))
	_, err = conn.Write(data[:len(data)/2])
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	require.Eventually(t, func() bool { return strings.Contains(ts.Logs.String(), `"method":"PUT"`) }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, ts.BuffersInUse())
	assert.Empty(t, listFiles(t, ts.Dir))
}

// faultyVolume wraps a Volume and fails Put with err.
type faultyVolume struct {
	Volume
	err error
}

func (f faultyVolume) Put(ctx context.Context, hash string, data []byte) error {
	return fmt.Errorf("write block %s: %w", hash, f.err)
}

func TestServer_Put_volumeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		body   string
	}{
		{"ENOSPC", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, 507, "insufficient storage\n"},
		{"EDQUOT", &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, 507, "insufficient storage\n"},
		{"EIO", &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}, 503, "volume unavailable\n"},
		{"other", errors.New("bucket gone"), 503, "volume unavailable\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dv, err := OpenDir(dir)
			require.NoError(t, err)
			ts := newTestServer(t, Options{Volume: faultyVolume{Volume: dv, err: tc.err}})
			resp, body := ts.do(t, http.MethodPut, "/"+arvados.HashOf([]byte("x")), []byte("x"))
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, body)
			assert.Empty(t, listFiles(t, dir))
		})
	}
}

// With MaxBuffers 1, bufferUnits streaming PUTs in progress use all the
// block memory: one more PUT, and a GET (which needs a whole 64 MiB
// buffer), get 503 with Retry-After after BufferWait; once the PUTs end,
// both are served.
func TestServer_Put_bufferExhaustion(t *testing.T) {
	ts := newTestServer(t, Options{MaxBuffers: 1, BufferWait: 100 * time.Millisecond})
	stored := []byte("stored")
	storedLoc := ts.put(t, stored)

	type open struct {
		data []byte
		pw   *io.PipeWriter
		done chan string
	}
	var puts []open
	for i := range bufferUnits {
		data := randomBlock(int64(11+i), 2<<20)
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPut, ts.URL+"/"+arvados.HashOf(data), pr)
		require.NoError(t, err)
		req.ContentLength = int64(len(data))
		done := make(chan string, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
		}()
		_, err = pw.Write(data[:1000])
		require.NoError(t, err)
		puts = append(puts, open{data, pw, done})
	}
	require.Eventually(t, func() bool { return ts.BuffersInUse() == bufferUnits }, 10*time.Second, 5*time.Millisecond)

	small := []byte("small")
	resp, body := ts.do(t, http.MethodPut, "/"+arvados.HashOf(small), small)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	resp, body = ts.do(t, http.MethodGet, "/"+storedLoc, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)

	for _, p := range puts {
		_, err := p.pw.Write(p.data[1000:])
		require.NoError(t, err)
		require.NoError(t, p.pw.Close())
		assert.Equal(t, "200 "+arvados.LocatorFor(p.data), <-p.done)
	}
	assert.Equal(t, arvados.LocatorFor(small), ts.put(t, small), "memory is free again")
	resp, body = ts.do(t, http.MethodGet, "/"+storedLoc, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, string(stored), body)
}
