package keepstore

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
)

// Options configure a Server. The zero value of each field means its
// default.
type Options struct {
	Dir             string        // directory volume
	SigningKey      []byte        // blob signing key; nil = return unsigned locators
	TTL             time.Duration // blob signing TTL; 0 = DefaultBlobSigningTTL
	EnforceSigning  bool          // verify signatures on GET/HEAD
	SystemRootToken string        // /index etc.
	ManagementToken string        // /_health/ping, /metrics ("" = health disabled, metrics open)
	MaxBuffers      int           // block memory in 64 MiB buffers' worth (a GET holds one, a streaming PUT 1/16; see doc.go); 0 = default 8
	StorageClasses  []string      // default ["default"]
	Logger          *slog.Logger
	// RequireMount refuses a Dir that is not a mount point
	// (ErrNotMountPoint), so that a disk that failed to mount is noticed
	// at start rather than filled in on the root filesystem.
	RequireMount bool

	// BufferWait bounds how long a request waits for a free block buffer
	// before it gets 503; 0 = 5s.
	BufferWait time.Duration
	// Volume, when set, is used instead of a DirVolume on Dir (another
	// backend, or a wrapper that injects faults in tests).
	Volume Volume
	// Clock, when set, replaces time.Now for signing locators (tests use
	// it to sign each PUT of the same block in a different second).
	Clock func() time.Time
}

// Defaults, applied in one place by New.
const (
	// 8 x 64 MiB = 512 MiB of block buffers at most: enough to keep a disk
	// busy, small enough for a modest VM.
	defaultMaxBuffers = 8
	// A client that waits longer than this for a buffer is better served by
	// a 503 it can retry elsewhere (keepclient tries the next service).
	defaultBufferWait = 5 * time.Second
)

// Server is a keepstore: the Keep block HTTP API (PROTOCOL 4) over one
// Volume. It is an http.Handler and holds no goroutines of its own, so it
// needs no Close.
type Server struct {
	opts    Options
	vol     Volume
	pool    *bufferPool
	metrics *metrics
	log     *slog.Logger
	mux     http.Handler // /metrics
}

// New checks opts, opens the volume and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.TTL == 0 {
		opts.TTL = arvados.DefaultBlobSigningTTL
	}
	if opts.TTL < time.Second {
		return nil, fmt.Errorf("blob signing TTL %s is under one second", opts.TTL)
	}
	if opts.MaxBuffers == 0 {
		opts.MaxBuffers = defaultMaxBuffers
	}
	if opts.MaxBuffers < 0 {
		return nil, fmt.Errorf("MaxBuffers %d is negative", opts.MaxBuffers)
	}
	if opts.BufferWait == 0 {
		opts.BufferWait = defaultBufferWait
	}
	if len(opts.StorageClasses) == 0 {
		opts.StorageClasses = []string{"default"}
	}
	if opts.EnforceSigning && len(opts.SigningKey) == 0 {
		return nil, errors.New("signing is enforced but no signing key is set")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	vol := opts.Volume
	if vol == nil {
		if opts.RequireMount {
			if err := checkMountPoint(opts.Dir); err != nil {
				return nil, err
			}
		}
		dv, err := OpenDir(opts.Dir)
		if err != nil {
			return nil, err
		}
		vol = dv
	}
	s := &Server{opts: opts, vol: vol, pool: newBufferPool(opts.MaxBuffers), log: opts.Logger}
	s.metrics = newMetrics(s.pool, opts.MaxBuffers)
	s.mux = promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return s, nil
}

// BuffersInUse returns the number of buffer slots requests hold now (a GET
// holds a block buffer, a streaming PUT its write windows).
func (s *Server) BuffersInUse() int { return int(s.pool.inUse.Load()) }

// ServeHTTP wraps every request with the request ID, CORS headers, metrics
// and one log line, then routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := httpx.RequestID(w, r)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes")
	h.Set("Access-Control-Expose-Headers", "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed")
	h.Set("Access-Control-Max-Age", "86486400")

	rw := &httpx.Recorder{ResponseWriter: w}
	body := &countingReader{r: r.Body}
	r.Body = body
	s.route(rw, r)
	if rw.Status == 0 {
		rw.Status = http.StatusOK
	}
	d := time.Since(start)
	s.metrics.requests.Count(r.Method, rw.Status)
	s.metrics.bytesIn.Add(float64(body.n))
	s.metrics.bytesOut.Add(float64(rw.Bytes))
	if r.Method == http.MethodPut {
		s.metrics.putDuration.Observe(d.Seconds())
	}
	httpx.LogRequest(r.Context(), s.log, r, httpx.Access{ID: reqID, Status: rw.Status, BytesIn: body.n, BytesOut: rw.Bytes, Duration: d})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodOptions:
		w.WriteHeader(http.StatusOK)
	case p == "/_health/ping" && r.Method == http.MethodGet:
		s.handleHealth(w, r)
	case p == "/metrics" && r.Method == http.MethodGet:
		if s.opts.ManagementToken != "" && !s.checkToken(w, r, s.opts.ManagementToken) {
			return
		}
		s.mux.ServeHTTP(w, r)
	case (p == "/index" || strings.HasPrefix(p, "/index/")) && r.Method == http.MethodGet:
		s.handleIndex(w, r)
	case isAdminRoute(r.Method, p):
		s.handleAdmin(w, r)
	case r.Method == http.MethodPut:
		s.handlePut(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.handleGet(w, r)
	default:
		httpError(w, http.StatusBadRequest, "Bad Request")
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.opts.ManagementToken == "" {
		httpError(w, http.StatusNotFound, "disabled")
		return
	}
	if !s.checkToken(w, r, s.opts.ManagementToken) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"health":"OK"}`+"\n")
}

// checkToken answers 401 when the request carries no token and 403 when
// its token is not want (or want is empty), and reports whether the
// request may go on (httpx.TokenStatus).
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request, want string) bool {
	switch httpx.TokenStatus(requestToken(r), want) {
	case http.StatusUnauthorized:
		httpError(w, http.StatusUnauthorized, "Unauthorized")
		return false
	case http.StatusForbidden:
		httpError(w, http.StatusForbidden, "Forbidden")
		return false
	}
	return true
}

// requestToken returns the first token of the request, in keepstore's order
// (PROTOCOL 1.2): Authorization Bearer/OAuth2, Basic password, api_token
// query parameter, arvados_api_token cookie.
func requestToken(r *http.Request) string {
	if tok, ok := httpx.BearerToken(r); ok {
		return tok
	}
	if _, pw, ok := r.BasicAuth(); ok && pw != "" {
		return pw
	}
	if t := r.URL.Query().Get("api_token"); t != "" {
		return t
	}
	if c, err := r.Cookie("arvados_api_token"); err == nil && c.Value != "" {
		if b, err := base64.URLEncoding.DecodeString(c.Value); err == nil {
			return string(b)
		}
	}
	return ""
}

// httpError writes msg and a newline as a text/plain body.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
