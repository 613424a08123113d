package proxy

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// totalPuts is the number of PUTs the keepstores of c have seen.
func (c *cluster) totalPuts() int {
	n := 0
	for _, s := range c.stores {
		n += int(s.puts.Load())
	}
	return n
}

// TestBlockStream follows the ring: readers see the block's bytes in
// order across the wrap, the producer waits for the slowest reader, a new
// reader can start only while byte 0 is held, and an abort fails readers
// instead of ending them.
func TestBlockStream(t *testing.T) {
	data := randomBlock(7, 10_000)
	st := newBlockStream(make([]byte, 4096), int64(len(data)))
	r1, ok := st.NewReader()
	require.True(t, ok)
	got := make(chan []byte)
	go func() {
		b, err := io.ReadAll(r1)
		assert.NoError(t, err)
		got <- b
	}()
	for st.filled < st.size {
		p, _, err := st.space()
		require.NoError(t, err)
		require.LessOrEqual(t, len(p), 4096)
		n := copy(p, data[st.filled:])
		st.publish(n)
	}
	assert.Equal(t, data, <-got)
	_, ok = st.NewReader()
	assert.False(t, ok, "byte 0 was overwritten: no new reader")
	r1.Close()
	assert.Equal(t, 0, st.readerCount())

	// A whole buffer: readers may start at any time; abort fails them.
	st = newBlockStream(make([]byte, len(data)), int64(len(data)))
	p, _, err := st.space()
	require.NoError(t, err)
	st.publish(copy(p, data[:len(data)-1]))
	r2, ok := st.NewReader()
	require.True(t, ok)
	buf := make([]byte, len(data))
	n, err := io.ReadFull(r2, buf[:len(data)-1])
	require.NoError(t, err)
	assert.Equal(t, data[:n], buf[:n])
	wantErr := errors.New("boom")
	go st.abort(wantErr)
	_, err = r2.Read(buf)
	assert.ErrorIs(t, err, wantErr, "an aborted stream never reads as complete")
	_, ok = st.NewReader()
	assert.False(t, ok)
	st.close()
	_, _, err = st.space()
	assert.Error(t, err)
}

// TestProxy_cutThrough_wrongLastByte: a body whose md5 differs from the
// path's hash only in its last byte, streamed to the keepstores as it
// arrives, answers 422 and leaves nothing on any keepstore, whether the
// PUT streams through a window or holds a retry copy, and whether the
// proxy checks the md5 itself (it then cuts the upstream requests before
// their last byte) or leaves it to the keepstores (they answer 422).
func TestProxy_cutThrough_wrongLastByte(t *testing.T) {
	for _, tc := range []struct {
		copies int
		md5    bool
	}{{-1, true}, {1, true}, {-1, false}, {1, false}} {
		t.Run(fmt.Sprintf("retry buffers %d, proxy md5 %v", tc.copies, tc.md5), func(t *testing.T) {
			c := newCluster(t, 3, func(o *Options) { o.RetryBuffers = tc.copies })
			c.proxy.verifyMD5 = tc.md5
			data := randomBlock(uint64(40+tc.copies), 4<<20)
			hash := arvados.HashOf(data)
			data[len(data)-1] ^= 1
			code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
			assert.Equal(t, 422, code, body)
			assert.Contains(t, body, "did not match specified locator "+hash)
			if tc.md5 {
				assert.Empty(t, h.Get("X-Keep-Replicas-Stored"), "refused before the keepstores had it all")
			} else {
				assert.Equal(t, "0", h.Get("X-Keep-Replicas-Stored"), "refused by the keepstores")
			}
			if tc.md5 {
				// The proxy aborts its upstream PUTs when it finds the
				// mismatch; under load one may not have reached its
				// keepstore yet.
				assert.LessOrEqual(t, c.totalPuts(), 2)
			} else {
				assert.Equal(t, 2, c.totalPuts(), "the block was streamed to two keepstores, which refused it")
			}
			assert.Empty(t, c.holders(t, hash))
			assert.Empty(t, c.holders(t, arvados.HashOf(data)))
			assert.Equal(t, 0, c.proxy.SpoolDepth())
			c.api.set(func(f *fakeAPI) { assert.Empty(t, f.logs, "nothing audited") })
		})
	}
}

// TestProxy_cutThrough_keepstoreDiesMidBlock: at replication 2, the first
// keepstore in probe order drops the connection after 3 MiB of an 8 MiB
// block. With a retry copy the third keepstore gets the block and the
// answer is 200 with 2 replicas; through a window only the start is gone,
// and the answer is 503 with the one replica stored. Never a false
// success: the replicas claimed are the ones held.
func TestProxy_cutThrough_keepstoreDiesMidBlock(t *testing.T) {
	for _, copies := range []int{1, -1} {
		t.Run(fmt.Sprintf("retry buffers %d", copies), func(t *testing.T) {
			c := newCluster(t, 3, func(o *Options) { o.RetryBuffers = copies })
			data := randomBlock(uint64(50+copies), 8<<20)
			hash := arvados.HashOf(data)
			order := c.probeIndexes(hash)
			c.stores[order[0]].cutAfter.Store(3 << 20)
			code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
			held := c.holders(t, hash)
			assert.NotContains(t, held, order[0])
			stored, err := strconv.Atoi(h.Get("X-Keep-Replicas-Stored"))
			require.NoError(t, err, "X-Keep-Replicas-Stored %q", h.Get("X-Keep-Replicas-Stored"))
			assert.Equal(t, len(held), stored)
			if copies > 0 {
				require.Equal(t, 200, code, body)
				assert.ElementsMatch(t, order[1:], held)
			} else {
				require.Equal(t, 503, code, body)
				assert.Contains(t, body, "Could not write sufficient replicas")
				assert.Contains(t, body, keepclient.ErrNoRewind.Error())
				assert.Equal(t, []int{order[1]}, held)
			}
			require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 10*time.Second, 10*time.Millisecond)
			c.api.set(func(f *fakeAPI) {
				require.Len(t, f.logs, 1, "the stored replicas are audited")
				assert.EqualValues(t, stored, f.logs[0]["properties"].(map[string]any)["replicas"])
			})
		})
	}
}

// TestProxy_cutThrough_refusedConnection: a keepstore that is down (its
// port closed) is replaced by the next one even through a window: byte 0
// is held until some keepstore has read.
func TestProxy_cutThrough_refusedConnection(t *testing.T) {
	c := newCluster(t, 3, func(o *Options) { o.RetryBuffers = -1 })
	data := randomBlock(60, 8<<20)
	hash := arvados.HashOf(data)
	order := c.probeIndexes(hash)
	c.storeTS[order[0]].Close()
	code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	require.Equal(t, 200, code, body)
	assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"))
	for _, i := range order[1:] {
		req, _ := http.NewRequest(http.MethodHead, c.storeTS[i].URL+"/"+hash, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "keepstore %d holds the block", i)
	}
}

// TestProxy_cutThrough_clientStops: a client that sends the start of its
// body fast and then stops is cut (408) after BodyIdleTimeout, although
// its block was already streaming to the keepstores, and nothing is
// stored.
func TestProxy_cutThrough_clientStops(t *testing.T) {
	const idle = 300 * time.Millisecond
	c := newCluster(t, 2, func(o *Options) {
		o.BodyIdleTimeout, o.RetryBuffers, o.ManagementToken = idle, -1, "mgmt-token"
	})
	data := randomBlock(70, 4<<20)
	res := slowPut(t, strings.TrimPrefix(c.proxyTS.URL, "http://"), userToken, data, 1<<20, 5*time.Millisecond, 2<<20)
	require.NoError(t, res.err)
	assert.Equal(t, 408, res.status, res.body)
	assert.GreaterOrEqual(t, res.answered.Sub(res.lastSent), idle)
	assert.Equal(t, 0.0, metricValue(t, c.proxyTS.URL, "arvupload_proxy_block_buffers"), "streamed through a window")
	// Both upstream PUTs start at once, but the second may not have
	// reached its keepstore when the client stops (1 run in 20 under
	// -race): at least one was streaming.
	assert.GreaterOrEqual(t, c.totalPuts(), 1, "the block was streaming to the keepstores")
	assert.Empty(t, c.holders(t, arvados.HashOf(data)))
}

// TestProxy_streamModes: a block larger than the window goes cut-through;
// one whose first window came too slowly for the budget is held whole
// first (store and forward); a block within the window is read whole
// before it is sent.
func TestProxy_streamModes(t *testing.T) {
	c := newCluster(t, 2, func(o *Options) { o.RetryBuffers = -1; o.ManagementToken = "mgmt-token" })
	put := func(seed uint64, size int) {
		t.Helper()
		data := randomBlock(seed, size)
		code, _, body := proxyPut(t, c.proxyTS.URL, "/"+arvados.HashOf(data), data, nil)
		require.Equal(t, 200, code, body)
	}
	mode := func(m string) float64 {
		return metricValue(t, c.proxyTS.URL, `arvupload_proxy_block_writes_total{mode="`+m+`"}`)
	}
	put(80, 3<<20)
	assert.Equal(t, 1.0, mode("cut_through"))
	assert.Equal(t, 0.0, metricValue(t, c.proxyTS.URL, "arvupload_proxy_block_buffers"))
	put(81, 1000)
	assert.Equal(t, 1.0, mode("store_and_forward"))
	c.proxy.cutThroughBudget = 0 // every client is too slow
	put(82, 3<<20)
	assert.Equal(t, 2.0, mode("store_and_forward"))
	assert.Equal(t, 1.0, metricValue(t, c.proxyTS.URL, "arvupload_proxy_block_buffers"))
}

// TestProxy_cutThrough_memoryPerRequest: PUTs of 8 MiB blocks at
// replication 2, more at once than the proxy's slots, stream through
// windows: without retry buffers no block buffer is ever made, and never
// more windows than slots.
func TestProxy_cutThrough_memoryPerRequest(t *testing.T) {
	const slots = 3
	c := newCluster(t, 3, func(o *Options) {
		o.RetryBuffers, o.MaxConcurrent, o.MaxConcurrentPerUser = -1, slots, slots
	})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := randomBlock(uint64(100+i), 8<<20)
			for try := 0; try < 200; try++ {
				req, _ := http.NewRequest(http.MethodPut, c.proxyTS.URL+"/"+arvados.HashOf(data), bytes.NewReader(data))
				req.Header.Set("Authorization", "Bearer "+userToken)
				req.Header.Set("X-Keep-Desired-Replicas", "2")
				resp, err := http.DefaultClient.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				assert.Equal(t, 200, resp.StatusCode, string(b))
				assert.Equal(t, "2", resp.Header.Get("X-Keep-Replicas-Stored"))
				return
			}
			t.Error("never admitted")
		}()
	}
	wg.Wait()
	made, out := c.proxy.bufs.stats()
	assert.Equal(t, 0, made, "no block buffer")
	assert.Equal(t, 0, out)
	made, out = c.proxy.windows.stats()
	assert.LessOrEqual(t, made, slots)
	assert.Greater(t, made, 0)
	assert.Equal(t, 0, out)
}

// TestKeepWriter_mismatch: a keepstore's refusal of a wrong body, 422 from
// ours or 400 "content hash ... did not match" from Arvados keepstores,
// becomes the proxy's 422; other failures do not.
func TestKeepWriter_mismatch(t *testing.T) {
	msg := "content hash 0cc175b9c0f1b6a831c399e269772661 did not match specified locator 92eb5ffee6ae2fec3ad71c777531578f"
	for _, tc := range []struct {
		status int
		msg    string
		want   bool
	}{
		{422, msg, true}, {400, msg, true}, {400, "Bad Request", false}, {503, "volume unavailable", false},
	} {
		res := keepWriter{}.result(keepclient.PutResult{Failures: []keepclient.ServiceError{
			{Service: "http://ks", Status: tc.status, Err: errors.New(tc.msg)},
		}})
		if tc.want {
			assert.Equal(t, tc.msg, res.Mismatch, "%d %s", tc.status, tc.msg)
		} else {
			assert.Empty(t, res.Mismatch, "%d %s", tc.status, tc.msg)
		}
	}
}

// A keepstore unreachable over the network is named to the client by the
// kind of failure only: the error's text names the internal address the
// proxy dialled, which stays internal.
func TestKeepWriter_resultHidesInternalAddresses(t *testing.T) {
	dial := func(err error) error {
		return &url.Error{Op: "Put", URL: "http://10.9.8.7:25107/0123", Err: &net.OpError{Op: "dial", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.IPv4(10, 9, 8, 7), Port: 25107}, Err: err}}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dial(syscall.ECONNREFUSED), "[0] connection refused"},
		{dial(syscall.ECONNRESET), "[0] connection lost"},
		{dial(context.DeadlineExceeded), "[0] timeout"},
		{dial(errors.New("no route to host 10.9.8.7")), "[0] keepstore unreachable"},
		{errors.New("[503] volume unavailable"), "[503] volume unavailable"},
	} {
		f := keepclient.ServiceError{Service: "http://10.9.8.7:25107", Err: tc.err}
		if tc.want[1] != '0' {
			f.Status = 503
			f.Err = errors.New("volume unavailable")
		}
		res := keepWriter{}.result(keepclient.PutResult{Failures: []keepclient.ServiceError{f}})
		require.Len(t, res.Failures, 1)
		assert.Equal(t, tc.want, res.Failures[0])
		assert.NotContains(t, res.Failures[0], "10.9.8.7")
	}
}

// recordReader returns at most 16 KiB a read, as a body over TLS does (a
// record at a time).
type recordReader struct{ r io.Reader }

func (r recordReader) Read(p []byte) (int, error) { return r.r.Read(p[:min(len(p), 16<<10)]) }

// A body that comes a TLS record at a time is published to the upstream
// readers 128 KiB at a time (8 times fewer wake-ups and upstream writes),
// every byte in order, and the hash is the body's. The ring holds the
// whole block and the gathering has no time limit, so the count does not
// depend on scheduling: 33 publishes, where one per read would be 257.
func TestBodyReader_gathersRecords(t *testing.T) {
	data := randomBlock(11, 4<<20+5000)
	st := newBlockStream(make([]byte, len(data)), int64(len(data)))
	s := &Server{}
	req := httptest.NewRequest(http.MethodPut, "/", io.NopCloser(recordReader{bytes.NewReader(data)}))
	w := httptest.NewRecorder()
	br, err := s.newBodyReader(w, req, md5.New(), nil)
	require.NoError(t, err)
	br.wait = time.Hour
	require.NoError(t, br.fill(st, st.size))
	assert.Equal(t, (len(data)+128<<10-1)/(128<<10), st.publishes, "publishes for %d bytes in 16 KiB reads", len(data))
	rd, ok := st.NewReader()
	require.True(t, ok)
	got, err := io.ReadAll(rd)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	sum := md5.Sum(data)
	assert.Equal(t, sum[:], br.hash.Sum(nil))
}
