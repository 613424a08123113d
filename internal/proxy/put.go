package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

const via = "HTTP/1.1 keepproxy"

// upstreamUnreachable answers a client when the keepstores could not be
// used at all (the error itself, with its internal addresses, is logged).
const upstreamUnreachable = "Bad Gateway: the proxy could not reach the keepstores; retry later"

// handleBlock routes everything that is not /_health or /metrics
// (PROTOCOL 7.1).
func (s *Server) handleBlock(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if r.Method == http.MethodOptions {
		return // CORS preflight: headers already set, 200, empty body
	}
	switch {
	case path == "":
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.handlePut(w, r, "", -1)
	case isBlockPath(path):
		loc, err := arvados.ParseLocator(path)
		if err != nil {
			textError(w, "Bad Request", http.StatusBadRequest)
			return
		}
		switch r.Method {
		case http.MethodPut:
			s.handlePut(w, r, loc.Hash, loc.Size)
		case http.MethodGet, http.MethodHead:
			s.handleRead(w, r, path)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		textError(w, "Bad Request", http.StatusBadRequest)
	}
}

// isBlockPath reports whether p starts with 32 lowercase hex digits followed
// by nothing or '+'.
func isBlockPath(p string) bool {
	if len(p) < 32 || !arvados.IsHash(p[:32]) {
		return false
	}
	return len(p) == 32 || p[32] == '+'
}

// handlePut implements PROTOCOL 7.3 in order. hash is "" for POST /;
// sizeHint is -1 when the path has none.
func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, hash string, sizeHint int64) {
	info := infoFrom(r)
	if strings.Contains(r.Header.Get("Via"), " keepproxy") {
		textError(w, "loop detected", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Via", via)
	var classes []string
	if h, ok := r.Header["X-Keep-Storage-Classes"]; ok {
		for _, c := range strings.Split(strings.Join(h, ","), ",") {
			if c = strings.TrimSpace(c); c != "" {
				classes = append(classes, c)
			}
		}
	}
	length, err := strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
	if err != nil || length < 0 || r.ContentLength < 0 {
		textError(w, "Length Required", http.StatusLengthRequired)
		return
	}
	if length > arvados.BlockSize {
		w.Header().Set("X-Keep-Replicas-Stored", "0")
		w.Header().Set("Connection", "close") // we do not read the body
		textError(w, fmt.Sprintf("Exceeded maximum block size (%d)", arvados.BlockSize), http.StatusRequestEntityTooLarge)
		return
	}
	if sizeHint > 0 && sizeHint != length {
		textError(w, "Locator size hint does not match Content-Length header", http.StatusBadRequest)
		return
	}
	token := tokenFrom(r.Header.Get("Authorization"))
	if token == "" {
		textError(w, "Missing or invalid Authorization header, or method not allowed", http.StatusForbidden)
		return
	}
	reqID := r.Header.Get("X-Request-Id")
	id, err := s.auth.check(r.Context(), token, reqID)
	switch {
	case errors.Is(err, ErrTokenRejected), errors.Is(err, ErrInactiveUser), errors.Is(err, ErrTokenExpired):
		info.err = err.Error()
		textError(w, "Missing or invalid Authorization header, or method not allowed", http.StatusForbidden)
		return
	case err != nil:
		info.err = err.Error()
		textError(w, "API server unavailable for the token check; retry later", http.StatusBadGateway)
		return
	}
	info.user = id.User.UUID
	want := 0 // the writer's default: discovery defaultCollectionReplication, else 2
	if n, err := strconv.Atoi(strings.TrimSpace(r.Header.Get("X-Keep-Desired-Replicas"))); err == nil && n >= 1 {
		want = n
	}
	info.want = want

	// Admission: a slot (and so a buffer) per PUT in progress, shared
	// fairly among users; a PUT may wait for one.
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.inflight.Add(1)
	}
	s.mu.Unlock()
	if closed {
		w.Header().Set("Retry-After", "1")
		textError(w, errClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	defer s.inflight.Done()
	queuedAt := time.Now()
	if err := s.adm.acquire(r.Context(), id.User.UUID); err != nil {
		info.err = err.Error()
		reason := "busy"
		switch {
		case errors.Is(err, errUserBusy):
			reason = "user_limit"
		case errors.Is(err, errQueueTimeout):
			reason = "queue_timeout"
		case errors.Is(err, errClosed):
			reason = "shutdown"
		case r.Context().Err() != nil:
			reason = "client_gone"
		}
		s.metrics.refused.WithLabelValues(reason).Inc()
		w.Header().Set("Retry-After", "1")
		textError(w, err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	}
	defer s.adm.release(id.User.UUID)
	info.queued = time.Since(queuedAt)

	// The block's bytes live in a blockStream: a window (streamWindow)
	// when the PUT can be streamed to the keepstores as it arrives, else a
	// full block buffer; a streamed PUT also takes a full buffer, as a copy
	// for retries, when one of RetryBuffers is free. Neither get waits: a
	// slot holds at most one of each.
	sw, streaming := s.writer.(StreamWriter)
	streaming = streaming && hash != "" // POST /: the hash names the upstream PUTs
	var buf []byte
	var release []func() // run once the upstream write and the body read are over
	defer func() {
		for _, f := range release {
			f()
		}
	}()
	takeBlock := func() ([]byte, error) {
		b, err := s.bufs.get(r.Context(), int(length))
		if err == nil {
			release = append(release, func() { s.bufs.put(b) })
		}
		return b, err
	}
	if !streaming || s.takeRetryCopy() {
		if streaming {
			release = append(release, s.giveRetryCopy)
		}
		buf, err = takeBlock()
	} else {
		buf, err = s.windows.get(r.Context(), streamWindow)
		if err == nil {
			win := buf
			release = append(release, func() { s.windows.put(win) })
		}
	}
	if err != nil {
		info.err = err.Error()
		w.Header().Set("Retry-After", "1")
		textError(w, "proxy busy: no block buffer; retry later", http.StatusServiceUnavailable)
		return
	}
	st := newBlockStream(buf, length)
	// The proxy hashes the body when it must know the hash (POST /) or
	// cannot rely on the writer to check it; our keepWriter's keepstores
	// check it themselves (see doc.go, "The proxy's own md5").
	hasher := s.bodyHasher(!streaming)
	// Checked once the whole body is read, before its last bytes go to
	// the keepstores: a refusal here means no keepstore got a whole body.
	last := func() error {
		if hasher != nil {
			actual := hex.EncodeToString(hasher.Sum(nil))
			if hash == "" {
				hash = actual
			} else if actual != hash {
				return &hashMismatchError{actual: actual, want: hash}
			}
		}
		if !id.ExpiresAt.IsZero() && !s.auth.now().Before(id.ExpiresAt) {
			return &tokenExpiredError{user: id.User.UUID, at: id.ExpiresAt}
		}
		return nil
	}
	br, err := s.newBodyReader(w, r, hasher, last)
	if err != nil {
		info.err = err.Error()
		textError(w, err.Error(), http.StatusInternalServerError)
		return
	}

	// The write continues even if the client goes away: the audit record
	// must follow any stored block. Shutdown waits for it (inflight).
	ctx := context.WithoutCancel(r.Context())
	var res PutResult
	var werr error
	written := false
	first := min(length, streamWindow)
	began := time.Now()
	err = br.fill(st, first)
	if err == nil && st.filled < length {
		// Stream the rest, unless the pace of the first window says the
		// body would hold the keepstores' requests open too long.
		projected := time.Duration(float64(time.Since(began)) * float64(length) / float64(first))
		if streaming && projected <= s.cutThroughBudget {
			info.mode = "cut_through"
			req := PutRequest{Hash: hash, Token: token, Replicas: want, StorageClasses: classes, RequestID: reqID}
			done := make(chan struct{})
			go func() {
				defer close(done)
				res, werr = sw.PutStream(ctx, length, st, req)
				st.close()
			}()
			if err = br.fill(st, length); err != nil {
				st.abort(err)
			}
			<-done
			written = true
		} else if !st.whole() {
			var b []byte
			if b, err = takeBlock(); err == nil {
				st.grow(b)
			}
		}
	}
	if !written && err == nil {
		if st.filled < length {
			err = br.fill(st, length)
		}
		if err == nil {
			// Store and forward: the whole block is here and checked.
			info.mode = "store_and_forward"
			res, werr = s.writer.PutBlock(ctx, st.buf[:length], PutRequest{
				Hash: hash, Token: token, Replicas: want, StorageClasses: classes, RequestID: reqID,
			})
		}
	}
	extendWriteDeadline(w)
	info.bytes = st.filled
	if err == nil {
		s.metrics.bytesIn.Add(float64(length))
		s.metrics.modes.WithLabelValues(info.mode).Inc()
	}
	var hm *hashMismatchError
	var te *tokenExpiredError
	switch {
	case err == nil:
	case errors.Is(err, errStreamClosed):
		// The upstream write failed for good before the body was whole:
		// its answer (503) follows; the rest of the body is not read.
		w.Header().Set("Connection", "close")
		if werr == nil { // never a success without the whole body
			werr = fmt.Errorf("upstream write ended after %d of %d bytes", st.filled, length)
		}
	case errors.As(err, &hm):
		info.err = err.Error()
		textError(w, err.Error(), http.StatusUnprocessableEntity)
		return
	case errors.As(err, &te):
		// The token expired while its body arrived: nothing was stored.
		info.err = err.Error()
		textError(w, "Missing or invalid Authorization header, or method not allowed", http.StatusForbidden)
		return
	case errors.Is(err, errBodyIdle) || errors.Is(err, errBodyTooSlow):
		info.err = err.Error()
		w.Header().Set("Connection", "close")
		textError(w, "timeout reading request body: "+err.Error(), http.StatusRequestTimeout)
		return
	default:
		info.err = err.Error()
		textError(w, fmt.Sprintf("read request body: expected %d bytes: %v", length, err), http.StatusBadRequest)
		return
	}
	info.locator = fmt.Sprintf("%s+%d", hash, length)
	s.answerPut(w, r, info, id.User.UUID, classes, res, werr)
}

// hashMismatchError: the body's md5 is not the hash in the path (422).
type hashMismatchError struct{ actual, want string }

func (e *hashMismatchError) Error() string {
	return fmt.Sprintf("content hash %s did not match specified locator %s", e.actual, e.want)
}

// tokenExpiredError: the token expired while the body arrived (403).
type tokenExpiredError struct {
	user string
	at   time.Time
}

func (e *tokenExpiredError) Error() string {
	return fmt.Sprintf("token of %s expired at %s during the upload", e.user, e.at.UTC().Format(time.RFC3339Nano))
}

// answerPut audits what was stored and answers a PUT whose body was read
// (or whose upstream write ended first): 200 with the signed locator, 503
// with the partial X-Keep-Replicas-Stored, or 502.
func (s *Server) answerPut(w http.ResponseWriter, r *http.Request, info *reqInfo, user string, classes []string, res PutResult, err error) {
	reqID := r.Header.Get("X-Request-Id")
	ctx := context.WithoutCancel(r.Context())
	extendWriteDeadline(w) // the upstream write may have taken a while too
	info.replicas = res.Replicas
	s.metrics.upstreamErrors.Add(float64(len(res.Failures)))
	if res.Replicas > 0 {
		s.metrics.replicasStored.Add(float64(res.Replicas))
		// Even a short write stored something: audit it too.
		if aerr := s.spool.Append(ctx, AuditRecord{
			Locator: info.locator, UserUUID: user, Replicas: res.Replicas,
			ClientAddr: clientAddr(r), RequestID: reqID, Time: time.Now().UTC(),
		}); aerr != nil {
			info.err = aerr.Error()
			s.log.Error("audit spool append", "request_id", reqID, "locator", info.locator, "err", aerr)
			textError(w, "cannot record the audit entry for this block; retry later", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("X-Keep-Replicas-Stored", strconv.Itoa(res.Replicas))
	if err != nil {
		info.err = err.Error()
		if res.Replicas == 0 && res.Mismatch != "" {
			// A keepstore verified the body and found it is not the
			// block its hash names: the client's fault, not to retry.
			textError(w, res.Mismatch, http.StatusUnprocessableEntity)
			return
		}
		if errors.Is(err, keepclient.ErrInsufficientReplicas) {
			msg := "Could not write sufficient replicas"
			if len(res.Failures) > 0 {
				msg += ": " + strings.Join(res.Failures, "; ")
			}
			textError(w, msg, http.StatusServiceUnavailable)
			return
		}
		textError(w, upstreamUnreachable, http.StatusBadGateway) // the log has err; its text names internal addresses
		return
	}
	if len(classes) > 0 {
		pairs := make([]string, len(classes))
		for i, c := range classes {
			pairs[i] = fmt.Sprintf("%s=%d", c, res.Replicas)
		}
		w.Header().Set("X-Keep-Storage-Classes-Confirmed", strings.Join(pairs, ", "))
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(strings.TrimSpace(res.Locator))))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, strings.TrimSpace(res.Locator))
}

// clientAddr is the client's IP: the connection's peer address (the proxy
// is the public edge; X-Forwarded-For is not trusted).
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// handleRead serves GET and HEAD of a block. GET is a clear 405 unless
// EnableReads. HEAD is always served for a locator signed for the
// caller's (valid) token, as arv-put's resume check needs: it tells no
// more than the signature already does (that the block is stored); the
// keepstores verify the signature against the token.
func (s *Server) handleRead(w http.ResponseWriter, r *http.Request, locator string) {
	if r.Method == http.MethodHead && !s.opts.EnableReads && s.reader != nil {
		l, err := arvados.ParseLocator(locator)
		if _, _, signed := l.SignatureHint(); err != nil || !signed {
			textError(w, "HEAD needs a locator signed for your token (+A...)", http.StatusForbidden)
			return
		}
		token := tokenFrom(r.Header.Get("Authorization"))
		if token == "" {
			textError(w, "Missing or invalid Authorization header", http.StatusForbidden)
			return
		}
		id, err := s.auth.check(r.Context(), token, r.Header.Get("X-Request-Id"))
		switch {
		case errors.Is(err, ErrTokenRejected), errors.Is(err, ErrInactiveUser), errors.Is(err, ErrTokenExpired):
			infoFrom(r).err = err.Error()
			textError(w, "Missing or invalid Authorization header", http.StatusForbidden)
			return
		case err != nil:
			infoFrom(r).err = err.Error()
			textError(w, "API server unavailable for the token check; retry later", http.StatusBadGateway)
			return
		}
		infoFrom(r).user = id.User.UUID
	} else if !s.opts.EnableReads || s.reader == nil {
		textError(w, "this proxy is write-only; reads are disabled (start it with --enable-reads)", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Via", r.Proto+" keepproxy")
	token := tokenFrom(r.Header.Get("Authorization"))
	resp, err := s.reader.ReadBlock(r.Context(), r.Method, locator, token, r.Header.Get("X-Request-Id"))
	if err != nil {
		infoFrom(r).err = err.Error()
		var re *ReadError
		if errors.As(err, &re) {
			textError(w, re.Msg, re.Status)
			return
		}
		textError(w, upstreamUnreachable, http.StatusBadGateway) // the log has err; its text names internal addresses
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Length", "Content-Type", "X-Keep-Locator"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		n, _ := io.Copy(w, resp.Body)
		infoFrom(r).bytes = n
	}
}
