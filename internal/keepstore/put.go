package keepstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
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
	buf, err := s.pool.get(r.Context(), r.ContentLength, s.opts.BufferWait)
	if err != nil {
		s.bufferError(w, err)
		return
	}
	defer s.pool.put(buf)

	n, sum, err := readBody(r.Body, buf)
	switch {
	case errors.Is(err, errTooLarge):
		w.Header().Set("Connection", "close") // the rest of the body is not read
		httpError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, io.ErrUnexpectedEOF) && r.ContentLength > 0:
		// The body ended early. The client may have gone (then nobody
		// reads this) or only half-closed (then it gets the reason).
		httpError(w, http.StatusBadRequest, fmt.Sprintf("content length %d did not match specified data size %d", n, r.ContentLength))
		return
	case r.Context().Err() != nil:
		w.WriteHeader(statusClientClosed)
		return
	case err != nil:
		httpError(w, http.StatusBadRequest, "read request body: "+err.Error())
		return
	}
	data := buf[:n]
	if r.ContentLength > 0 && int64(n) != r.ContentLength {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("content length %d did not match specified data size %d", n, r.ContentLength))
		return
	}
	if sum != hash {
		httpError(w, http.StatusUnprocessableEntity, fmt.Sprintf("content hash %s did not match specified locator %s", sum, hash))
		return
	}

	// A request whose client left still stores the block: it is verified,
	// and storing it is cheaper than having the client send it again.
	ctx := context.WithoutCancel(r.Context())
	if err := s.store(ctx, hash, data); err != nil {
		switch {
		case errors.Is(err, errCollision):
			httpError(w, http.StatusInternalServerError, "hash collision")
		case IsFull(err):
			httpError(w, http.StatusInsufficientStorage, "insufficient storage")
		default:
			httpError(w, http.StatusServiceUnavailable, "volume unavailable")
		}
		s.log.Warn("store block", "request_id", w.Header().Get("X-Request-Id"), "hash", hash, "err", err)
		return
	}

	loc := hash + "+" + strconv.Itoa(n)
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
