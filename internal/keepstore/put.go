package keepstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// errTooLarge means a request body is over BlockSize.
var errTooLarge = errors.New("request body larger than 64 MiB")

// statusClientClosed is the nginx convention for "client went away".
const statusClientClosed = 499

// putHash returns the hash of a PUT path "/<hash>[+anything]", or "" when the
// path is not of that form (upper case, "//", too short, ...).
func putHash(p string) string {
	if len(p) < 33 || p[0] != '/' {
		return ""
	}
	h := p[1:33]
	if !arvados.IsHash(h) || (len(p) > 33 && p[33] != '+') {
		return ""
	}
	return h
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	hash := putHash(r.URL.Path)
	if hash == "" {
		httpError(w, http.StatusBadRequest, "Bad Request")
		return
	}
	classes, ok := s.confirmedClasses(r.Header.Get("X-Keep-Storage-Classes"))
	if !ok {
		httpError(w, http.StatusInsufficientStorage, "insufficient storage")
		return
	}
	if r.ContentLength > arvados.BlockSize {
		httpError(w, http.StatusRequestEntityTooLarge, errTooLarge.Error())
		return
	}
	var n int64
	var err error
	if sv, ok := s.vol.(StreamVolume); ok {
		if aerr := s.pool.acquire(r.Context(), s.opts.BufferWait, streamUnits); aerr != nil {
			s.bufferError(w, aerr)
			return
		}
		defer s.pool.release(streamUnits)
		n, err = s.putStream(r, sv, hash)
	} else {
		buf, gerr := s.pool.get(r.Context(), r.ContentLength, s.opts.BufferWait)
		if gerr != nil {
			s.bufferError(w, gerr)
			return
		}
		defer s.pool.put(buf)
		n, err = s.putBuffered(r, hash, buf)
	}
	if err != nil {
		s.putError(w, r, hash, n, err)
		return
	}

	loc := hash + "+" + strconv.FormatInt(n, 10)
	if tok := requestToken(r); tok != "" && len(s.opts.SigningKey) > 0 {
		loc = arvados.SignLocator(loc, tok, s.opts.Clock().Add(s.opts.TTL), s.opts.TTL, s.opts.SigningKey)
	}
	h := w.Header()
	h.Set("X-Keep-Replicas-Stored", "1")
	pairs := make([]string, len(classes))
	for i, c := range classes {
		pairs[i] = c + "=1"
	}
	h.Set("X-Keep-Storage-Classes-Confirmed", strings.Join(pairs, ", "))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(loc)+1))
	io.WriteString(w, loc+"\n")
}

// bodyError is a failure of the request body itself (cut short, too
// large, unreadable), as opposed to one of the volume.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// hashMismatch means the body's md5 is not the hash in the path.
type hashMismatch struct{ sum, hash string }

func (e *hashMismatch) Error() string {
	return fmt.Sprintf("content hash %s did not match specified locator %s", e.sum, e.hash)
}

// putError answers a failed PUT: n is the number of body bytes read.
func (s *Server) putError(w http.ResponseWriter, r *http.Request, hash string, n int64, err error) {
	var be *bodyError
	var hm *hashMismatch
	switch {
	case errors.Is(err, errTooLarge):
		w.Header().Set("Connection", "close") // the rest of the body is not read
		httpError(w, http.StatusRequestEntityTooLarge, errTooLarge.Error())
	case errors.As(err, &be) && errors.Is(err, io.ErrUnexpectedEOF) && r.ContentLength > 0:
		// The body ended early. The client may have gone (then nobody
		// reads this) or only half-closed (then it gets the reason).
		httpError(w, http.StatusBadRequest, fmt.Sprintf("content length %d did not match specified data size %d", n, r.ContentLength))
	case errors.As(err, &be) && r.Context().Err() != nil:
		w.WriteHeader(statusClientClosed)
	case errors.As(err, &be):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.As(err, &hm):
		httpError(w, http.StatusUnprocessableEntity, hm.Error())
	default:
		switch {
		case errors.Is(err, errCollision):
			httpError(w, http.StatusInternalServerError, "hash collision")
		case IsFull(err):
			httpError(w, http.StatusInsufficientStorage, "insufficient storage")
		default:
			httpError(w, http.StatusServiceUnavailable, "volume unavailable")
		}
		s.log.Warn("store block", "request_id", w.Header().Get("X-Request-Id"), "hash", hash, "err", err)
	}
}

// checkBody compares a completely read body of n bytes and md5 sum with
// the request's Content-Length and the hash in its path.
func checkBody(r *http.Request, hash string, n int64, sum string) error {
	if r.ContentLength > 0 && n != r.ContentLength {
		return &bodyError{io.ErrUnexpectedEOF}
	}
	if sum != hash {
		return &hashMismatch{sum: sum, hash: hash}
	}
	return nil
}

// putStream stores the body as it arrives: each window read from the
// socket is hashed and written from where it was read (BlockWriter), and
// the block is committed only when the body ended cleanly with the right
// length and md5; otherwise the temporary file is removed. A block the
// volume already holds is not written again: the body is compared with it
// instead (compareStream).
//
// A request whose client leaves after the whole body arrived still stores
// the block: it is verified, and storing it is cheaper than having the
// client send it again.
func (s *Server) putStream(r *http.Request, sv StreamVolume, hash string) (int64, error) {
	ctx := context.WithoutCancel(r.Context())
	body := &bodyReader{r: r.Body, h: md5.New()}
	_, err := sv.Head(ctx, hash)
	switch {
	case err == nil:
		return s.compareStream(ctx, r, hash, body)
	case !errors.Is(err, ErrNotFound):
		return 0, err
	}
	bw, err := sv.Create(ctx, hash)
	if err != nil {
		return 0, err
	}
	n, err := bw.ReadFrom(body)
	if berr := body.failure(); berr != nil {
		bw.Abort()
		return n, &bodyError{berr}
	}
	if err != nil {
		bw.Abort()
		// Read the rest (at most 64 MiB + 1 bytes) so that the client,
		// still sending, reads the answer rather than a reset.
		io.Copy(io.Discard, body)
		return n, err
	}
	if err := checkBody(r, hash, n, body.sum()); err != nil {
		bw.Abort()
		return n, err
	}
	return n, bw.Commit()
}

// compareStream reads the body through md5 and compares it with the stored
// block in 64 KiB chunks: equal and with the right md5 means Touch; a
// right md5 with different bytes is a collision. The stored block is never
// written.
func (s *Server) compareStream(ctx context.Context, r *http.Request, hash string, body *bodyReader) (int64, error) {
	rc, err := s.vol.Get(ctx, hash)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	got := make([]byte, 64<<10)
	stored := make([]byte, 64<<10)
	same := true
	for {
		m, err := fill(body, got)
		if same && m > 0 {
			k, serr := io.ReadFull(rc, stored[:m])
			if serr != nil && serr != io.EOF && serr != io.ErrUnexpectedEOF {
				return body.n, fmt.Errorf("read stored block %s: %w", hash, serr)
			}
			same = k == m && bytes.Equal(got[:m], stored[:m])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return body.n, &bodyError{err}
		}
	}
	if err := checkBody(r, hash, body.n, body.sum()); err != nil {
		return body.n, err
	}
	if same {
		var one [1]byte
		k, serr := rc.Read(one[:])
		if serr != nil && serr != io.EOF {
			return body.n, fmt.Errorf("read stored block %s: %w", hash, serr)
		}
		same = k == 0
	}
	if !same {
		return body.n, fmt.Errorf("store %s: %w", hash, errCollision)
	}
	return body.n, s.vol.Touch(ctx, hash)
}

// putBuffered reads the whole body into buf, then stores it: the path for
// volumes that cannot stream (Volume without Create).
func (s *Server) putBuffered(r *http.Request, hash string, buf []byte) (int64, error) {
	n, sum, err := readBody(r.Body, buf)
	if err != nil {
		return int64(n), &bodyError{err}
	}
	if err := checkBody(r, hash, int64(n), sum); err != nil {
		return int64(n), err
	}
	// See putStream: a verified block is stored even if the client left.
	return int64(n), s.store(context.WithoutCancel(r.Context()), hash, buf[:n])
}

// bodyReader hashes and counts a PUT body as it is read, and ends it with
// errTooLarge at the byte past 64 MiB: it never reads more than 64 MiB + 1
// bytes. It keeps the body's first error (io.EOF at a clean end), so that
// a caller can tell a bad body from a failing volume.
type bodyReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if left := arvados.BlockSize + 1 - b.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.r.Read(p)
	if b.n+int64(n) > arvados.BlockSize {
		n = int(arvados.BlockSize - b.n)
		err = errTooLarge
	}
	b.h.Write(p[:n])
	b.n += int64(n)
	if err != nil {
		b.err = err
	}
	return n, err
}

// failure returns the body's error, or nil at a clean end or while it is
// still being read.
func (b *bodyReader) failure() error {
	if b.err == io.EOF {
		return nil
	}
	return b.err
}

func (b *bodyReader) sum() string { return hex.EncodeToString(b.h.Sum(nil)) }

// confirmedClasses returns the classes a PUT confirms: the requested ones this
// server serves, or all of its classes when none was requested. ok is false
// when classes were requested and this server serves none of them.
func (s *Server) confirmedClasses(header string) (classes []string, ok bool) {
	var requested []string
	for _, c := range strings.Split(header, ",") {
		if c = strings.TrimSpace(c); c != "" && !slices.Contains(requested, c) {
			requested = append(requested, c)
		}
	}
	if len(requested) == 0 {
		return s.opts.StorageClasses, true
	}
	for _, c := range requested {
		if slices.Contains(s.opts.StorageClasses, c) {
			classes = append(classes, c)
		}
	}
	return classes, len(classes) > 0
}

func (s *Server) bufferError(w http.ResponseWriter, err error) {
	if errors.Is(err, errNoBuffer) {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "no buffer available, try again")
		return
	}
	w.WriteHeader(statusClientClosed)
}

// readBody reads r into buf, hashing while it reads. It reads at most
// len(buf)+1 bytes: a byte past a full buffer means errTooLarge. A body that
// ends with anything but io.EOF (a cut Content-Length body gives
// io.ErrUnexpectedEOF) returns that error.
func readBody(r io.Reader, buf []byte) (int, string, error) {
	h := md5.New()
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		h.Write(buf[n : n+m])
		n += m
		if err == io.EOF {
			return n, hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return n, "", err
		}
	}
	var one [1]byte
	for {
		m, err := r.Read(one[:])
		if m > 0 {
			return n, "", errTooLarge
		}
		if err == io.EOF {
			return n, hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return n, "", err
		}
	}
}

// errCollision means different data is stored under the same hash.
var errCollision = errors.New("hash collision")

// store writes data unless the volume already holds it: an identical copy is
// only touched, a different one is a collision.
func (s *Server) store(ctx context.Context, hash string, data []byte) error {
	same, err := s.compare(ctx, hash, data)
	switch {
	case errors.Is(err, ErrNotFound):
		return s.vol.Put(ctx, hash, data)
	case err != nil:
		return err
	case !same:
		return fmt.Errorf("store %s: %w", hash, errCollision)
	}
	return s.vol.Touch(ctx, hash)
}

// compare reports whether the stored block equals data, reading it in small
// chunks so that no second block buffer is needed.
func (s *Server) compare(ctx context.Context, hash string, data []byte) (bool, error) {
	rc, err := s.vol.Get(ctx, hash)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	chunk := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(rc, chunk)
		if n > len(data) || !bytes.Equal(chunk[:n], data[:n]) {
			return false, nil
		}
		data = data[n:]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return len(data) == 0, nil
		}
		if err != nil {
			return false, fmt.Errorf("read stored block %s: %w", hash, err)
		}
	}
}
