package keepclient

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
)

// countingConn counts the writes made to a socket.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tlsKeep is a Keep service over TLS that checks each PUT body against
// the hash in its path, and a Keep client whose socket writes are counted.
func tlsKeep(t *testing.T, batched bool) (*Keep, *atomic.Int64, *atomic.Int64) {
	return countedKeep(t, true, batched)
}

// countedKeep is tlsKeep, over plain HTTP when !overTLS.
func countedKeep(t *testing.T, overTLS, batched bool) (*Keep, *atomic.Int64, *atomic.Int64) {
	var stored atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := md5.New()
		n, err := io.Copy(h, r.Body)
		hash := strings.TrimPrefix(r.URL.Path, "/")
		if err != nil || hex.EncodeToString(h.Sum(nil)) != hash || n != r.ContentLength {
			http.Error(w, "body does not match its hash", http.StatusUnprocessableEntity)
			return
		}
		stored.Add(1)
		w.Header().Set("X-Keep-Replicas-Stored", r.Header.Get("X-Keep-Desired-Replicas"))
		fmt.Fprintf(w, "%s+%d\n", hash, n)
	}))
	if overTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	writes := new(atomic.Int64)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := newDialer(0).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
	conf := srv.Client().Transport.(*http.Transport).TLSClientConfig
	tr := newKeepTransport(conf, dial)
	if !batched {
		tr.DialTLSContext = nil
		tr.DialContext = dial
	}
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	svc := arvados.KeepService{ServiceHost: host, ServicePort: p, ServiceSSLFlag: overTLS, ServiceType: "proxy"}
	svc.UUID = "zzzzz-bi6l4-000000000000000"
	k := NewKeep(nil, KeepOptions{Services: []arvados.KeepService{svc}, HTTPClient: &http.Client{Transport: tr}, Retries: -1})
	return k, writes, &stored
}

// A block goes out over TLS in socket writes of about 256 KiB, not one per
// 16 KiB record, and arrives whole: 8 MiB in at most 48 writes (plain TLS
// makes 512 or more), blocks sent at once on one client each intact.
func TestKeep_putInLargeSocketWrites(t *testing.T) {
	t.Parallel()
	block := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(block)
	sum := md5.Sum(block)
	hash := hex.EncodeToString(sum[:])

	k, writes, stored := tlsKeep(t, true)
	res, err := k.Put(context.Background(), block, PutOptions{Hash: hash, Token: "t"})
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%s+%d", hash, len(block)), res.Locator)
	n := writes.Load()
	t.Logf("batched: %d socket writes", n)
	assert.LessOrEqual(t, n, int64(48), "socket writes for an 8 MiB block (33 batches), handshake included")

	plain, plainWrites, _ := tlsKeep(t, false)
	_, err = plain.Put(context.Background(), block, PutOptions{Hash: hash, Token: "t"})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, plainWrites.Load(), int64(512), "plain TLS: a write per record (the test could fail)")

	// Plain HTTP (the proxy to its keepstores): 252 KiB writes, not
	// io.Copy's 32 KiB.
	for _, batched := range []bool{true, false} {
		hk, hw, _ := countedKeep(t, false, batched)
		_, err = hk.Put(context.Background(), block, PutOptions{Hash: hash, Token: "t"})
		require.NoError(t, err)
		if batched {
			assert.LessOrEqual(t, hw.Load(), int64(40), "socket writes for an 8 MiB block over plain HTTP")
		} else {
			assert.GreaterOrEqual(t, hw.Load(), int64(256), "io.Copy's 32 KiB writes (the test could fail)")
		}
	}

	// Several blocks at once, over several connections of one client.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			b := make([]byte, 3<<20+i*4097)
			rand.New(rand.NewSource(int64(i) + 10)).Read(b)
			s := md5.Sum(b)
			h := hex.EncodeToString(s[:])
			res, err := k.Put(context.Background(), b, PutOptions{Hash: h, Token: "t"})
			if assert.NoError(t, err) {
				assert.Equal(t, fmt.Sprintf("%s+%d", h, len(b)), res.Locator)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(7), stored.Load())
}

// A batchConn holds nothing once the Write above it returns: each small
// Write reaches the socket before the next, and writes TLS makes on its
// own (Close's alert) go straight through.
func TestBatchConn_nothingHeldAfterWrite(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer b.Close()
	var writes atomic.Int64
	bc := &batchConn{Conn: countingConn{Conn: a, writes: &writes}}
	got := make(chan []byte, 10)
	go func() {
		for {
			buf := make([]byte, 64)
			n, err := b.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- buf[:n]
		}
	}()
	bc.begin()
	for _, s := range []string{"ab", "cd", "ef"} {
		_, err := bc.Write([]byte(s))
		require.NoError(t, err)
	}
	assert.Zero(t, writes.Load(), "held while the batch is open")
	require.NoError(t, bc.end())
	assert.Equal(t, "abcdef", string(<-got))
	_, err := bc.Write([]byte("gh")) // no batch open: straight through
	require.NoError(t, err)
	assert.Equal(t, "gh", string(<-got))
	assert.Equal(t, int64(2), writes.Load())
	assert.Nil(t, bc.buf, "an idle connection holds no buffer")
}
