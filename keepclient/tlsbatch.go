package keepclient

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
)

// Keep PUT bodies over TLS: crypto/tls writes each record (16 KiB at most)
// to the socket with its own write(2), so a 64 MiB block costs 4,096
// system calls and as many trips through the TCP stack. The Keep client's
// connections coalesce the records of one Write into socket writes of up
// to sendBatch bytes: the TLS connection sits on a batchConn, which holds
// what TLS writes while a Write of the connection above is in progress
// and sends it when its buffer is full and when that Write returns.
// Nothing stays buffered after a Write returns, so the bytes on the wire
// and their order are those of plain TLS; writes TLS makes on its own
// (the handshake, alerts, Close) go straight through.

// sendBatch is the most a batchConn holds before it writes to the socket.
// readChunk is how much of a request body batchedTLSConn.ReadFrom hands
// TLS at once: its records, with their headers and tags (22 bytes a 16 KiB
// record), fit one batch.
const (
	sendBatch = 256 << 10
	readChunk = sendBatch - 4<<10
)

var sendBatchPool = sync.Pool{New: func() any { b := make([]byte, 0, sendBatch); return &b }}

// batchConn is the socket under a TLS connection. While batching (between
// begin and end), writes are appended to a buffer, which is written out
// when it would overflow and at end.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching int // begin calls not yet ended
	buf      *[]byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching == 0 || len(p) > sendBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = sendBatchPool.Get().(*[]byte)
	}
	if len(*c.buf)+len(p) > sendBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// flushLocked writes out what is held; the buffer stays for reuse.
func (c *batchConn) flushLocked() error {
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching++
	c.mu.Unlock()
}

// end writes out what is held and, when no other batch is open, gives the
// buffer back to the pool (an idle connection holds none).
func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching--
	err := c.flushLocked()
	if c.batching == 0 && c.buf != nil {
		sendBatchPool.Put(c.buf)
		c.buf = nil
	}
	return err
}

// batchedTLSConn is a TLS connection whose Writes reach the socket in
// batches (batchConn).
type batchedTLSConn struct {
	*tls.Conn
	raw *batchConn
}

func (c *batchedTLSConn) Write(p []byte) (int, error) {
	c.raw.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.raw.end(); err == nil && ferr != nil {
		// TLS counted the bytes as sent; the connection is broken.
		return n, ferr
	}
	return n, err
}

// ReadFrom is what the HTTP transport sends a request body with (io.Copy
// to the connection): see copyChunks.
func (c *batchedTLSConn) ReadFrom(r io.Reader) (int64, error) { return copyChunks(c, r) }

// chunkedConn is a plain connection whose ReadFrom (how the HTTP
// transport sends a request body) writes readChunk pieces: 8 socket
// writes a MiB instead of io.Copy's 32.
type chunkedConn struct{ net.Conn }

func (c chunkedConn) ReadFrom(r io.Reader) (int64, error) { return copyChunks(c.Conn, r) }

// copyChunks copies r to w in reads of up to readChunk bytes, each one
// Write: over TLS one socket write (batchConn), where io.Copy's own 32 KiB
// buffer would make one of every two records. Neither side is offered its
// WriterTo or ReaderFrom (a TCP connection's would copy 32 KiB at a time).
func copyChunks(w io.Writer, r io.Reader) (int64, error) {
	bp := readChunkPool.Get().(*[]byte)
	defer readChunkPool.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, *bp)
}

var readChunkPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// dialTLSBatched returns an http.Transport DialTLSContext for tr that
// dials with dial, makes the TLS handshake (tr's TLSClientConfig, with the
// server name from addr when it has none) within tr's
// TLSHandshakeTimeout, and returns the connection with batched writes.
// Without ALPN the server speaks HTTP/1.1, which is what the Keep client
// wants (ForceAttemptHTTP2 false).
func dialTLSBatched(dial func(ctx context.Context, network, addr string) (net.Conn, error), tr *http.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{}
		if tr.TLSClientConfig != nil {
			cfg = tr.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg.ServerName = host
		}
		bc := &batchConn{Conn: raw}
		tc := tls.Client(bc, cfg)
		hctx := ctx
		if tr.TLSHandshakeTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, tr.TLSHandshakeTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return &batchedTLSConn{Conn: tc, raw: bc}, nil
	}
}
