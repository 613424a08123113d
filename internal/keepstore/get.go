package keepstore

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// errChecksum means stored data does not hash to its name.
var errChecksum = errors.New("checksum mismatch in stored data")

// handleGet serves GET and HEAD /<locator> (and //<locator>). GET reads the
// block into a pool buffer and checks its md5 before sending a byte, so a
// corrupt block gets 502 instead of a 200 with bad data. HEAD streams the
// block through md5 with a small buffer.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Vary", "X-Keep-Signature")
	p := strings.TrimPrefix(r.URL.Path, "/")
	p = strings.TrimPrefix(p, "/") // "//<locator>" is accepted for old clients
	loc, err := arvados.ParseLocator(p)
	if err != nil {
		httpError(w, http.StatusBadRequest, "invalid locator")
		return
	}
	if r.Method == http.MethodGet && loc.Size < 0 {
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if s.opts.EnforceSigning && !s.checkSignature(w, r, p) {
		return
	}
	ctx := r.Context()
	info, err := s.vol.Head(ctx, loc.Hash)
	if err != nil {
		s.volumeError(w, r, err)
		return
	}
	if r.Method == http.MethodHead {
		if err := s.verify(r, loc.Hash); err != nil {
			s.volumeError(w, r, err)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}

	buf, err := s.pool.get(ctx, info.Size, s.opts.BufferWait)
	if err != nil {
		s.bufferError(w, err)
		return
	}
	defer s.pool.put(buf)
	rc, err := s.vol.Get(ctx, loc.Hash)
	if err != nil {
		s.volumeError(w, r, err)
		return
	}
	n, sum, err := readBody(rc, buf)
	rc.Close()
	if err == nil && sum != loc.Hash {
		err = errChecksum
	}
	if errors.Is(err, errTooLarge) {
		err = errChecksum // a block file over 64 MiB cannot be the block
	}
	if err != nil {
		s.volumeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	w.Write(buf[:n])
}

// verify reads the whole block through md5.
func (s *Server) verify(r *http.Request, hash string) error {
	rc, err := s.vol.Get(r.Context(), hash)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := md5.New()
	if _, err := io.Copy(h, rc); err != nil {
		return fmt.Errorf("read block %s: %w", hash, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != hash {
		return fmt.Errorf("verify block %s: %w", hash, errChecksum)
	}
	return nil
}

// checkSignature answers as PROTOCOL 3.4 says and reports whether the
// request may go on.
func (s *Server) checkSignature(w http.ResponseWriter, r *http.Request, locator string) bool {
	tok := requestToken(r)
	if tok == "" {
		httpError(w, http.StatusUnauthorized, "no token provided in Authorization header")
		return false
	}
	err := arvados.VerifySignature(locator, tok, s.opts.TTL, s.opts.SigningKey, time.Now())
	switch {
	case err == nil:
		return true
	case errors.Is(err, arvados.ErrSignatureExpired):
		httpError(w, http.StatusUnauthorized, "expired signature")
	default:
		httpError(w, http.StatusBadRequest, "invalid signature")
	}
	return false
}

func (s *Server) volumeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		httpError(w, http.StatusNotFound, "file does not exist")
		return
	case r.Context().Err() != nil:
		w.WriteHeader(statusClientClosed)
		return
	case errors.Is(err, errChecksum):
		httpError(w, http.StatusBadGateway, "checksum mismatch in stored data")
	default:
		httpError(w, http.StatusServiceUnavailable, "volume unavailable")
	}
	s.log.Warn("read block", "request_id", w.Header().Get("X-Request-Id"), "err", err)
}
