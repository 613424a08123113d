package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
	"github.com/arv-upload/arv-upload/keepclient"
)

// BlockWriter stores a block on the internal keepstores.
//
// PutBlock writes data (whose md5 is req.Hash) with the client's token so
// that the keepstores sign the locator for that token. When fewer than the
// wanted replicas were stored it returns an error wrapping
// keepclient.ErrInsufficientReplicas together with the partial result. It
// must be safe for concurrent use.
type BlockWriter interface {
	PutBlock(ctx context.Context, data []byte, req PutRequest) (PutResult, error)
}

// PutRequest is one upstream block write.
type PutRequest struct {
	Hash           string
	Token          string // the client's token, sent as Bearer
	Replicas       int    // 0 = the writer's default (discovery, else 2)
	StorageClasses []string
	RequestID      string
}

// PutResult is the outcome of an upstream write.
type PutResult struct {
	Locator  string   // signed locator from the last successful PUT
	Replicas int      // confirmed replicas
	Failures []string // one "[status] message" per failed service attempt
	// Mismatch is a keepstore's 422 message (the body is not the block
	// its hash names), "" when none answered 422.
	Mismatch string
}

// BlockReader reads a block from the internal keepstores (only used with
// EnableReads). ReadBlock returns the first 200 response, whose Body the
// caller closes, or an error; a *ReadError says which status to answer.
// The keepstores check signatures.
type BlockReader interface {
	ReadBlock(ctx context.Context, method, locator, token, requestID string) (*http.Response, error)
}

// ReadError is a failed read with the status to pass on.
type ReadError struct {
	Status int
	Msg    string
}

func (e *ReadError) Error() string { return fmt.Sprintf("read block: %d %s", e.Status, e.Msg) }

const (
	// DefaultMaxConcurrent: each PUT in progress holds a 1 MiB stream
	// window, or a 64 MiB block buffer (slow clients, POST, retry copies),
	// so 16 bound block data to 16 x 65 MiB.
	DefaultMaxConcurrent = 16
	// DefaultQueueTimeout: a waiting client's body does not move, so the
	// wait must end well inside the Keep client's 2-minute stall timeout;
	// 20s is time enough for the blocks ahead to finish on a fast link.
	DefaultQueueTimeout = 20 * time.Second
	// DefaultBodyIdleTimeout: a client that sends no byte for this long
	// is gone (a dead link, a stalled attacker) and gives its buffer back.
	// Long enough for a congested uplink's pauses; how slowly bytes come
	// otherwise does not matter.
	DefaultBodyIdleTimeout = 30 * time.Second
	// DefaultMinBodyRateWindow: over a minute, a link's bursts and
	// pauses average out, so the rate check measures the link, not its
	// jitter.
	DefaultMinBodyRateWindow = time.Minute
	// DefaultCloseDrainTimeout: on shutdown, after the writes in flight,
	// audit delivery gets this long to empty the spool; a healthy API
	// server takes milliseconds per record, and what is left is durable.
	DefaultCloseDrainTimeout = 5 * time.Second
	// responseWriteTimeout: the response is a few hundred bytes; a
	// client that cannot take them in this long is gone.
	responseWriteTimeout = time.Minute
)

// Options configure a Server. The zero value of each field means its
// default.
type Options struct {
	API  *keepclient.Client // service token client (audit logs); used WithToken(clientToken) for users/current
	Keep *keepclient.Keep   // upstream writer over the internal keepstores

	// Authorizer, Writer, Reader and Audit override the implementations
	// built from API and Keep (tests use them to inject faults).
	Authorizer Authorizer
	Writer     BlockWriter
	Reader     BlockReader
	Audit      AuditSink

	// Services are the internal keepstores reads go to (EnableReads), in
	// probe order; HTTPClient is used for them (default: ViaTransport, 300s).
	Services   []arvados.KeepService
	HTTPClient *http.Client

	AuthCacheTTL     time.Duration // successful token checks; default 30s, so a deactivated account stops within that (expiry is exact)
	AuthFailCacheTTL time.Duration // refused tokens; default 2s, short so a newly created token works almost at once
	AuthCacheSize    int           // default 10000 entries (~100 bytes each): bounded memory
	BodyIdleTimeout  time.Duration // longest pause while reading a body; default DefaultBodyIdleTimeout

	// Admission. MaxConcurrent PUTs are in progress at once (each holds a
	// 1 MiB window or a 64 MiB block buffer); default DefaultMaxConcurrent. A user (the
	// token's owner) holds at most MaxConcurrentPerUser of them; default
	// MaxConcurrent/4 (at least 1), so one identity, whatever it sends
	// and however slowly, leaves three quarters of the proxy to the
	// others (4 by default: twice arv-upload's default --threads). PUTs
	// beyond that wait, at most MaxQueuedPerUser per user (default
	// MaxConcurrentPerUser, so a client's next blocks are ready as its
	// current ones finish) and MaxQueued in all (default 4 x MaxConcurrent:
	// a waiting PUT holds a connection, not a buffer), each for at most
	// QueueTimeout (default DefaultQueueTimeout); a negative MaxQueued or
	// MaxQueuedPerUser means no waiting. The rest get 503 + Retry-After.
	MaxConcurrent        int
	MaxConcurrentPerUser int
	// RetryBuffers is how many PUTs streamed to the keepstores may also
	// keep their whole block (a 64 MiB buffer) while it streams, so that
	// a keepstore failing mid-block is replaced by another one; default
	// MaxConcurrent/4 (at least 1), negative = none. A PUT finding none
	// free streams through a window only, and a failure after its first
	// streamWindow bytes answers 503 with the replicas stored (the client
	// sends the block again).
	RetryBuffers     int
	MaxQueued        int
	MaxQueuedPerUser int
	QueueTimeout     time.Duration

	// MinBodyRate, when > 0, cuts (408) a client whose body brings fewer
	// than MinBodyRate bytes/s over a window of MinBodyRateWindow (default
	// DefaultMinBodyRateWindow); windows follow each other from the
	// start of the body. 0 (the default) checks pauses only.
	MinBodyRate       int64
	MinBodyRateWindow time.Duration

	SpoolDir        string // durable audit spool; required
	EnableReads     bool
	ManagementToken string // /_health/ping and /metrics; "" = both disabled (404)
	Logger          *slog.Logger

	// CloseDrainTimeout is how long Close waits for the deliverer to
	// empty the spool; default DefaultCloseDrainTimeout. Undelivered records stay in the spool.
	CloseDrainTimeout time.Duration

	// AuditMinBackoff and AuditMaxBackoff bound the retry delay of audit
	// delivery; defaults 1s and 1m.
	AuditMinBackoff, AuditMaxBackoff time.Duration

	// AuditToken is the token audit records are posted with (a dedicated
	// audit user's token scoped to POST /arvados/v1/logs); "" = API's own
	// token. SetAuditToken replaces it while the proxy runs.
	AuditToken string
	// AuditRefusedLogInterval is the least time between two error lines
	// saying the API server refuses the audit token; default 1m, so a
	// proxy whose token expired says so without flooding its log.
	AuditRefusedLogInterval time.Duration
}

// Server is the write-only Keep proxy.
type Server struct {
	opts    Options
	log     *slog.Logger
	auth    *authCache
	writer  BlockWriter
	reader  BlockReader
	sink    AuditSink
	spool   *Spool
	metrics *metrics
	mux     http.Handler

	adm     *admission    // MaxConcurrent slots, shared fairly among users
	bufs    *bufferPool   // MaxConcurrent block buffers
	windows *bufferPool   // MaxConcurrent stream windows (streamWindow)
	copies  chan struct{} // RetryBuffers: block buffers streamed PUTs may hold as a retry copy

	// verifyMD5: the proxy hashes every body itself, besides the
	// keepstores (see doc.go, "The proxy's own md5").
	verifyMD5        bool
	cutThroughBudget time.Duration // see the constant; tests change it

	auditToken atomic.Pointer[string]
	auditKick  chan struct{} // SetAuditToken: retry delivery now
	refusal    auditRefusal

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	cancel   context.CancelFunc
	done     chan struct{}
}

// New builds a Server and opens its audit spool. Call Start to begin audit
// delivery and Close to finish.
func New(opts Options) (*Server, error) {
	if opts.AuthCacheTTL <= 0 {
		opts.AuthCacheTTL = 30 * time.Second
	}
	if opts.AuthFailCacheTTL <= 0 {
		opts.AuthFailCacheTTL = 2 * time.Second
	}
	if opts.AuthCacheSize <= 0 {
		opts.AuthCacheSize = 10000
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.MaxConcurrentPerUser <= 0 {
		opts.MaxConcurrentPerUser = max(1, opts.MaxConcurrent/4)
	}
	if opts.MaxQueued == 0 {
		opts.MaxQueued = 4 * opts.MaxConcurrent
	}
	if opts.MaxQueuedPerUser == 0 {
		opts.MaxQueuedPerUser = opts.MaxConcurrentPerUser
	}
	if opts.RetryBuffers == 0 {
		opts.RetryBuffers = max(1, opts.MaxConcurrent/4)
	}
	if opts.QueueTimeout <= 0 {
		opts.QueueTimeout = DefaultQueueTimeout
	}
	if opts.BodyIdleTimeout <= 0 {
		opts.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if opts.MinBodyRateWindow <= 0 {
		opts.MinBodyRateWindow = DefaultMinBodyRateWindow
	}
	if opts.AuditMinBackoff <= 0 {
		opts.AuditMinBackoff = time.Second
	}
	if opts.AuditMaxBackoff <= 0 {
		opts.AuditMaxBackoff = time.Minute
	}
	if opts.AuditRefusedLogInterval <= 0 {
		opts.AuditRefusedLogInterval = time.Minute
	}
	if opts.CloseDrainTimeout <= 0 {
		opts.CloseDrainTimeout = DefaultCloseDrainTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SpoolDir == "" {
		return nil, errors.New("proxy: SpoolDir is required (durable audit spool)")
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(), done: make(chan struct{}), auditKick: make(chan struct{}, 1)}
	s.auditToken.Store(&opts.AuditToken)
	s.refusal.interval = opts.AuditRefusedLogInterval
	s.writer, s.reader, s.sink = opts.Writer, opts.Reader, opts.Audit
	authz := opts.Authorizer
	if err := s.wireKeepclient(&authz); err != nil {
		return nil, err
	}
	if authz == nil || s.writer == nil || s.sink == nil {
		return nil, errors.New("proxy: need API and Keep (or Authorizer, Writer and Audit)")
	}
	s.auth = newAuthCache(authz, opts.AuthCacheTTL, opts.AuthFailCacheTTL, opts.AuthCacheSize)
	s.auth.hit = s.metrics.tokenCache.WithLabelValues("hit").Inc
	s.auth.miss = s.metrics.tokenCache.WithLabelValues("miss").Inc
	s.adm = newAdmission(opts.MaxConcurrent, opts.MaxConcurrentPerUser, opts.MaxQueued, opts.MaxQueuedPerUser, opts.QueueTimeout)
	s.adm.changed = func(running, queued int) {
		s.metrics.inFlight.Set(float64(running))
		s.metrics.queued.Set(float64(queued))
	}
	s.bufs = newBufferPool(opts.MaxConcurrent, arvados.BlockSize)
	s.windows = newBufferPool(opts.MaxConcurrent, streamWindow)
	s.windows.onMake = func(made int) { s.metrics.windows.Set(float64(made)) }
	s.copies = make(chan struct{}, max(0, opts.RetryBuffers))
	s.verifyMD5 = false // the keepstores check every body: see doc.go
	s.cutThroughBudget = cutThroughBudget
	s.bufs.onMake = func(made int) {
		s.metrics.buffers.Set(float64(made))
		s.metrics.bufferBytes.Set(float64(made) * arvados.BlockSize)
	}
	sp, err := OpenSpool(opts.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.spool = sp
	sp.depthF = func(n int) { s.metrics.spoolDepth.Set(float64(n)) }
	s.metrics.spoolDepth.Set(float64(sp.Depth()))

	metricsH := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	// Routing by hand: http.ServeMux would clean "//<hash>" into a valid
	// path, which keepproxy answers with 400.
	s.mux = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/_health/"):
			s.handleHealth(w, r, strings.TrimPrefix(p, "/_health/"))
		case p == "/metrics":
			// The proxy faces the internet: its metrics (users' activity,
			// load) are for the operator only, as /_health is.
			if s.managementOK(w, r) {
				metricsH.ServeHTTP(w, r)
			}
		default:
			s.handleBlock(w, r)
		}
	})
	return s, nil
}

// Start begins delivering spooled audit records until Close.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("proxy: start after close")
	}
	if s.cancel != nil {
		return nil
	}
	ctx, s.cancel = context.WithCancel(ctx)
	d := &deliverer{
		spool: s.spool, sink: s.sink, log: s.log,
		minBackoff: s.opts.AuditMinBackoff, maxBackoff: s.opts.AuditMaxBackoff,
		delivered: s.metrics.auditDelivered.Inc, failed: s.metrics.auditFailed.Inc,
		kick: s.auditKick, refused: s.auditRefused, accepted: s.auditAccepted,
	}
	go func() {
		defer close(s.done)
		d.run(ctx)
	}()
	return nil
}

// Close refuses new PUTs (503), waits for the ones in flight (their audit
// records included), stops audit delivery and closes the spool. Records not
// yet delivered stay in the spool for the next start. The HTTP listener is
// the caller's: call http.Server.Shutdown first so no new connections come.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel := s.cancel
	s.mu.Unlock()
	s.adm.close() // waiting PUTs get 503 at once
	s.inflight.Wait()
	if cancel != nil {
		s.drain(s.opts.CloseDrainTimeout)
		cancel()
		<-s.done
	}
	return s.spool.Close()
}

// drain gives the running deliverer up to d to empty the spool, so that a
// clean shutdown usually leaves nothing behind. What is left stays durable.
func (s *Server) drain(d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.spool.Depth() > 0 {
		select {
		case <-deadline.C:
			return
		case <-s.done: // delivery stopped (its context ended)
			return
		case <-tick.C:
		}
	}
}

// Handler returns the HTTP handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// SpoolDepth returns the number of audit records not yet delivered.
func (s *Server) SpoolDepth() int { return s.spool.Depth() }

// ServeHTTP routes a request (PROTOCOL 7.1), and counts and logs it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := httpx.RequestID(w, r)
	rec := &httpx.Recorder{ResponseWriter: w}
	info := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	setCORS(rec.Header())
	s.mux.ServeHTTP(rec, r)
	code := rec.Status
	if code == 0 {
		code = http.StatusOK
	}
	s.metrics.requests.Count(r.Method, code)
	var extra []slog.Attr
	if info.user != "" {
		extra = append(extra, slog.String("user_uuid", info.user))
	}
	if info.locator != "" {
		extra = append(extra, slog.String("locator", info.locator), slog.Int("want_replicas", info.want), slog.Int("replicas", info.replicas))
	}
	if info.mode != "" {
		extra = append(extra, slog.String("mode", info.mode))
	}
	if info.queued >= time.Millisecond {
		extra = append(extra, slog.Float64("queued_ms", float64(info.queued.Microseconds())/1000))
	}
	if info.err != "" {
		extra = append(extra, slog.String("err", info.err))
	}
	httpx.LogRequest(r.Context(), s.log, r, httpx.Access{ID: reqID, Status: code, BytesIn: info.bytes, BytesOut: rec.Bytes, Duration: time.Since(start)}, extra...)
}

// reqInfo collects the per-request facts for the log line.
type reqInfo struct {
	user, locator, err string
	bytes              int64
	want, replicas     int
	queued             time.Duration // waited for an upload slot
	mode               string        // how a PUT's block went upstream: cut-through or store-and-forward
}

type reqInfoKey struct{}

func infoFrom(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// setCORS sets keepproxy's CORS headers (PROTOCOL 4.6).
func setCORS(h http.Header) {
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS, POST")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes")
	h.Set("Access-Control-Expose-Headers", "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed")
	h.Set("Access-Control-Max-Age", "86486400")
}

// textError writes msg and a newline with the given status.
func textError(w http.ResponseWriter, msg string, code int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// handleHealth answers /_health/ping as keepstore does.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, check string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if check != "ping" {
		textError(w, "Bad Request", http.StatusBadRequest)
		return
	}
	if !s.managementOK(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if msg := s.auditRefusedHealth(); msg != "" {
		// Writes still work (records wait in the spool), but the audit
		// trail does not advance until someone acts: a monitor must see it.
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"health": "ERROR", "error": msg})
		return
	}
	io.WriteString(w, `{"health":"OK"}`+"\n")
}

// managementOK checks the ManagementToken, answering 404/401/403 itself.
func (s *Server) managementOK(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ManagementToken == "" {
		textError(w, "disabled", http.StatusNotFound)
		return false
	}
	got, _ := httpx.BearerToken(r)
	switch httpx.TokenStatus(got, s.opts.ManagementToken) {
	case http.StatusUnauthorized:
		textError(w, "Unauthorized", http.StatusUnauthorized)
		return false
	case http.StatusForbidden:
		textError(w, "Forbidden", http.StatusForbidden)
		return false
	}
	return true
}
