package proxy

import (
	"crypto/md5"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// errBodyIdle and errBodyTooSlow end a body read that was too slow; the
// client gets 408.
var (
	errBodyIdle    = errors.New("no data from the client")
	errBodyTooSlow = errors.New("request body below the minimum rate")
)

// bodyPacer decides when a client sending a body is too slow: no byte for
// idle, or, with a quota, a window that brought fewer than quota bytes
// (windows of length window follow each other from the start of the body).
// A client that keeps sending, however slowly, is never cut by idle alone.
type bodyPacer struct {
	idle     time.Duration
	window   time.Duration
	quota    int64     // bytes each window must bring; 0 = no rate check
	last     time.Time // last byte (or the start)
	winEnd   time.Time // end of the current window
	winBytes int64     // bytes in the current window
}

func newBodyPacer(start time.Time, idle time.Duration, rate int64, window time.Duration) *bodyPacer {
	p := &bodyPacer{idle: idle, last: start}
	if rate > 0 {
		p.window, p.winEnd = window, start.Add(window)
		p.quota = max(1, int64(float64(rate)*window.Seconds()))
	}
	return p
}

// deadline is the moment the client will be cut if nothing more arrives.
func (p *bodyPacer) deadline() time.Time {
	d := p.last.Add(p.idle)
	if p.quota > 0 {
		end := p.winEnd
		if p.winBytes >= p.quota {
			end = end.Add(p.window) // this window is met; the next one must be too
		}
		if end.Before(d) {
			d = end
		}
	}
	return d
}

// progress records that a read returned n bytes at now. It returns an error
// wrapping errBodyTooSlow when a window ended short of its quota. Bytes
// count for the window in which their read returned, except that a window
// still short at its end takes the bytes of a read returning at that moment
// (they were arriving when the deadline came).
func (p *bodyPacer) progress(now time.Time, n int) error {
	if n > 0 {
		p.last = now
	}
	if p.quota == 0 {
		return nil
	}
	late := int64(n)
	for !now.Before(p.winEnd) {
		if p.winBytes < p.quota {
			p.winBytes, late = p.winBytes+late, 0
			if p.winBytes < p.quota {
				return fmt.Errorf("%w: %d bytes in %v, need %d (%d bytes/s)", errBodyTooSlow,
					p.winBytes, p.window, p.quota, int64(float64(p.quota)/p.window.Seconds()))
			}
		}
		p.winEnd, p.winBytes = p.winEnd.Add(p.window), 0
	}
	p.winBytes += late
	return nil
}

// pause moves the pacer's clock by d, a time the proxy itself did not read
// the body (it waited for the keepstores): the client could not send then.
func (p *bodyPacer) pause(d time.Duration) {
	p.last = p.last.Add(d)
	if p.quota > 0 {
		p.winEnd = p.winEnd.Add(d)
	}
}

// bodyReader reads a PUT's body into a blockStream, hashing it, and paces
// the client: before each read the connection's read deadline is set to
// the pacer's deadline, so a client is cut (an error wrapping errBodyIdle
// or errBodyTooSlow) after BodyIdleTimeout without a byte, or when a
// MinBodyRateWindow brought less than MinBodyRate; a slow client that
// keeps sending finishes, however long it takes. Time spent waiting for
// the keepstores to take the window does not count against the client.
type bodyReader struct {
	s     *Server
	r     *http.Request
	rc    *http.ResponseController
	pacer *bodyPacer
	hash  hash.Hash // nil: not hashed here
	// last, when set, is called once the whole body is read, before its
	// last bytes are published: an error aborts the stream there, so no
	// keepstore ever receives a whole body the proxy refuses.
	last func() error
	// wait is publishWait (tests make it longer).
	wait time.Duration
}

// bodyHasher returns the md5 the proxy computes of a body: always when
// needed, else when verifyMD5 is set; nil = none.
func (s *Server) bodyHasher(needed bool) hash.Hash {
	if needed || s.verifyMD5 {
		return md5.New()
	}
	return nil
}

// newBodyReader lifts the write deadline and starts pacing the body of r.
func (s *Server) newBodyReader(w http.ResponseWriter, r *http.Request, h hash.Hash, last func() error) (*bodyReader, error) {
	rc := http.NewResponseController(w)
	// http.Server's WriteTimeout counts from the request's headers, and
	// over HTTP/2 it resets the stream when it fires even if nothing is
	// being written: lift it while the body comes (the response gets its
	// own, extendWriteDeadline).
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("clear write deadline: %w", err)
	}
	return &bodyReader{
		s: s, r: r, rc: rc, hash: h, last: last, wait: publishWait,
		pacer: newBodyPacer(time.Now(), s.opts.BodyIdleTimeout, s.opts.MinBodyRate, s.opts.MinBodyRateWindow),
	}, nil
}

// fill reads the body into st until st holds until bytes (at most the
// block's size), publishing them to st's readers as they come.
func (br *bodyReader) fill(st *blockStream, until int64) error {
	if st.size == 0 && br.last != nil {
		return br.last()
	}
	for st.filled < until {
		p, waited, err := st.space()
		if err != nil {
			return err
		}
		br.pacer.pause(waited)
		p = p[:min(int64(len(p)), until-st.filled)]
		n, whole, err := br.gather(st, p)
		if whole {
			_ = br.rc.SetReadDeadline(time.Time{})
			if br.last != nil {
				if lerr := br.last(); lerr != nil {
					return lerr
				}
			}
			st.publish(n)
			return nil
		}
		st.publish(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// publishChunk and publishWait bound how much of a body gather reads
// before it is published to the upstream readers: over TLS a body read
// returns one record (16 KiB at most), and publishing each would wake the
// readers for a 16 KiB write upstream. Gathering 128 KiB, or what came
// within 20 ms, makes those 8 times fewer (proxy write syscalls for 2 GiB:
// 68k -> 12k).
const (
	publishChunk = 128 << 10
	publishWait  = 20 * time.Millisecond
)

// gather reads the body into p (the region of st from space) until it
// holds publishChunk bytes or p is full, publishWait has passed since the
// first read returned, a read fails, or the block is whole (whole: its
// last byte is read). Each read has the pacer's deadline as it stands
// then, so a client is cut BodyIdleTimeout after its last byte whatever
// the gathering.
func (br *bodyReader) gather(st *blockStream, p []byte) (n int, whole bool, err error) {
	var first time.Time
	for {
		if err := br.rc.SetReadDeadline(br.pacer.deadline()); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return n, false, fmt.Errorf("set read deadline: %w", err)
		}
		m, rerr := br.r.Body.Read(p[n:])
		if br.hash != nil {
			br.hash.Write(p[n : n+m]) // hashing overlaps with the network
		}
		n += m
		if st.filled+int64(n) == st.size {
			return n, true, nil
		}
		now := time.Now()
		if perr := br.pacer.progress(now, m); perr != nil {
			return n, false, perr
		}
		var ne net.Error
		switch {
		case rerr == nil:
		case errors.Is(rerr, os.ErrDeadlineExceeded) || (errors.As(rerr, &ne) && ne.Timeout()):
			return n, false, fmt.Errorf("%w for %v", errBodyIdle, br.s.opts.BodyIdleTimeout)
		case errors.Is(rerr, io.EOF):
			return n, false, io.ErrUnexpectedEOF
		default:
			return n, false, rerr
		}
		if first.IsZero() {
			first = now
		}
		if n >= min(len(p), publishChunk) || now.Sub(first) >= br.wait {
			return n, false, nil
		}
	}
}

// extendWriteDeadline gives the response its own deadline: http.Server's
// WriteTimeout counts from the request's headers, and a slow client's body
// may have taken longer than that.
func extendWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(responseWriteTimeout))
}
