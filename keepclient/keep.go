package keepclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// ErrChecksum means block data read back does not match its hash.
var ErrChecksum = errors.New("block data does not match its hash")

// KeepOptions configures a Keep client.
type KeepOptions struct {
	// Services is a fixed service list (the proxy's keepstores, tests,
	// ARVADOS_KEEP_SERVICES). nil means ask the API server
	// (keep_services/accessible) once.
	Services []arvados.KeepService
	// Replicas is the default number of replicas per block; 0 means the
	// discovery document's defaultCollectionReplication, else 2.
	Replicas       int
	StorageClasses []string
	// Retries is the number of extra passes over services that failed
	// temporarily; 0 means 2 (PROTOCOL 6.3), negative means none.
	Retries int
	// RetryDelay is the first pass's maximum wait; it doubles per pass up to
	// 10x. 0 means 2 s, as the Go SDK does.
	RetryDelay time.Duration
	HTTPClient *http.Client
	// StallTimeout fails a PUT attempt (which is then retried) when no byte
	// of its body has gone out for this long: a peer that vanished without
	// a reset, a dead NAT mapping. 0 means 2 minutes. There is no
	// whole-request timeout, so a 64 MiB block over a slow or --bwlimit'ed
	// link takes as long as it needs while it moves.
	StallTimeout time.Duration
}

// errStalled is the cause of a PUT attempt cancelled by its stall watchdog.
var errStalled = errors.New("no progress sending the block")

// Keep writes (and, for verification, reads) Keep blocks. It is safe for
// concurrent use.
type Keep struct {
	api  *Client
	opts KeepOptions
	http *http.Client

	mu       sync.Mutex
	services []arvados.KeepService
}

// NewKeep returns a Keep client. api may be nil when opts.Services is set
// and every Put passes a Token.
func NewKeep(api *Client, opts KeepOptions) *Keep {
	switch {
	case opts.Retries == 0:
		opts.Retries = 2
	case opts.Retries < 0:
		opts.Retries = 0 // one pass, no retries
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 2 * time.Second
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = 2 * time.Minute
	}
	k := &Keep{api: api, opts: opts, services: opts.Services, http: opts.HTTPClient}
	if k.http == nil {
		var tlsConf *tls.Config
		if api != nil {
			tlsConf = api.shared.tls
		}
		k.http = &http.Client{Transport: NewKeepTransport(tlsConf, nil)}
	}
	return k
}

// NewKeepTransport returns the transport the Keep client uses (when its
// options give no HTTPClient), for others that send blocks (the proxy,
// to its keepstores): blocks go out in socket writes of about 256 KiB,
// over TLS too, not one per TLS record or per 32 KiB (tlsbatch.go).
// tlsConf may be nil, dialer too (30 s to connect). Its TLSClientConfig
// and TLSHandshakeTimeout may be changed before first use.
func NewKeepTransport(tlsConf *tls.Config, dialer *net.Dialer) *http.Transport {
	if dialer == nil {
		dialer = newDialer(30 * time.Second)
	}
	return newKeepTransport(tlsConf, dialer.DialContext)
}

// newKeepTransport is NewKeepTransport with dial making its TCP
// connections (tests count their writes).
func newKeepTransport(tlsConf *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr := newTransport(tlsConf, 30*time.Second)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return chunkedConn{c}, nil
	}
	tr.DialTLSContext = dialTLSBatched(dial, tr)
	tr.ResponseHeaderTimeout = 5 * time.Minute
	tr.MaxIdleConnsPerHost = 64
	return tr
}

// ServicesFromEnv parses ARVADOS_KEEP_SERVICES (space-separated URLs) into
// proxy-type services with the SDKs' fake UUIDs 00000-bi6l4-%015d.
func ServicesFromEnv(s string) []arvados.KeepService {
	var out []arvados.KeepService
	for i, f := range strings.Fields(s) {
		u, err := url.Parse(f)
		if err != nil || u.Host == "" {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = 80
			if u.Scheme == "https" {
				port = 443
			}
		}
		var ks arvados.KeepService
		ks.UUID = fmt.Sprintf("00000-bi6l4-%015d", i)
		ks.ServiceHost = u.Hostname()
		ks.ServicePort = port
		ks.ServiceSSLFlag = u.Scheme == "https"
		ks.ServiceType = "proxy"
		out = append(out, ks)
	}
	return out
}

// ProbeOrder returns services in rendezvous order for a block hash
// (PROTOCOL 5.3): by md5hex(hash + suffix) descending, where suffix is the
// last 15 characters of a 27-character UUID, else the whole UUID.
func ProbeOrder(hash string, services []arvados.KeepService) []arvados.KeepService {
	type weighted struct {
		w string
		s arvados.KeepService
	}
	ws := make([]weighted, len(services))
	for i, s := range services {
		suffix := s.UUID
		if len(suffix) == 27 {
			suffix = suffix[12:]
		}
		ws[i] = weighted{arvados.HashOf([]byte(hash + suffix)), s}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].w > ws[j].w })
	out := make([]arvados.KeepService, len(ws))
	for i := range ws {
		out[i] = ws[i].s
	}
	return out
}

// Services returns the services this client writes to, fetching them from
// the API server on first use.
func (k *Keep) Services(ctx context.Context) ([]arvados.KeepService, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.services != nil {
		return k.services, nil
	}
	if k.api == nil {
		return nil, errors.New("no keep services configured")
	}
	svcs, err := k.api.KeepServicesAccessible(ctx)
	if err != nil {
		return nil, fmt.Errorf("list keep services: %w", err)
	}
	if len(svcs) == 0 {
		return nil, errors.New("the API server lists no keep services")
	}
	k.services = svcs
	return svcs, nil
}

// PutOptions are per-block settings.
type PutOptions struct {
	Hash           string // md5 hex of the data; computed when empty
	Replicas       int    // 0 = the Keep default
	StorageClasses []string
	Token          string // overrides the API client's token
	RequestID      string
	// RateLimit paces request bodies; nil means unlimited. Share one
	// limiter across calls (and goroutines) to cap the total upload
	// bandwidth: every replica PUT and every retry counts, since each
	// sends the whole block again.
	RateLimit *RateLimiter
}

// PutResult says what a Put achieved.
type PutResult struct {
	Locator  string         // signed locator from the last successful PUT
	Replicas int            // replicas confirmed
	Classes  map[string]int // confirmed per storage class
	Failures []ServiceError // every failed attempt, in order
}

// ServiceError is one failed PUT to one service.
type ServiceError struct {
	Service string // base URL
	Status  int    // 0 for transport errors
	Err     error
}

func (e ServiceError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %v", e.Service, e.Err)
	}
	return fmt.Sprintf("%s: [%d] %v", e.Service, e.Status, e.Err)
}

func (e ServiceError) temporary() bool {
	return e.Status == 0 || temporaryStatus(e.Status)
}

func (k *Keep) defaultReplicas(ctx context.Context) int {
	if k.opts.Replicas > 0 {
		return k.opts.Replicas
	}
	if k.api != nil {
		if d, err := k.api.Discovery(ctx); err == nil && d.DefaultCollectionReplication > 0 {
			return d.DefaultCollectionReplication
		}
	}
	return 2
}

// putPlan is what Put and PutStream settle before sending a block: how
// many replicas, which classes, with which token and request ID, and the
// writable services (allDisk: every one is a keepstore, which stores one
// replica per PUT, rather than a proxy).
type putPlan struct {
	wanted       int
	classes      []string
	token, reqID string
	writable     []arvados.KeepService
	allDisk      bool
}

func (k *Keep) planPut(ctx context.Context, hash string, opts PutOptions) (putPlan, error) {
	p := putPlan{wanted: opts.Replicas, classes: opts.StorageClasses, token: opts.Token, reqID: opts.RequestID, allDisk: true}
	if p.wanted <= 0 {
		p.wanted = k.defaultReplicas(ctx)
	}
	if p.classes == nil {
		p.classes = k.opts.StorageClasses
	}
	if p.token == "" && k.api != nil {
		p.token = k.api.Token()
	}
	if p.reqID == "" {
		p.reqID = RequestIDFrom(ctx)
	}
	if p.reqID == "" {
		p.reqID = NewRequestID()
	}
	svcs, err := k.Services(ctx)
	if err != nil {
		return p, fmt.Errorf("put block %s: %w", hash, err)
	}
	for _, s := range svcs {
		if s.ReadOnly {
			continue
		}
		p.writable = append(p.writable, s)
		if s.ServiceType != "disk" {
			p.allDisk = false
		}
	}
	if len(p.writable) == 0 {
		return p, fmt.Errorf("put block %s: no writable keep services", hash)
	}
	return p, nil
}

// Put stores data in Keep (PROTOCOL 6): PUT /<md5> to writable services in
// rendezvous order until the wanted replicas are confirmed. With only disk
// services it runs up to (wanted - done) PUTs at once; with a proxy among
// them, one at a time, counting X-Keep-Replicas-Stored. Services that failed
// temporarily are retried in later passes after a jittered wait. The data
// slice is re-sent whole on each attempt and not modified.
func (k *Keep) Put(ctx context.Context, data []byte, opts PutOptions) (PutResult, error) {
	var res PutResult
	if len(data) > arvados.BlockSize {
		return res, fmt.Errorf("put block of %d bytes: %w", len(data), ErrBlockTooLarge)
	}
	hash := opts.Hash
	if hash == "" {
		hash = arvados.HashOf(data)
	}
	p, err := k.planPut(ctx, hash, opts)
	if err != nil {
		return res, err
	}
	wanted, classes, token, reqID, writable, allDisk := p.wanted, p.classes, p.token, p.reqID, p.writable, p.allDisk
	pending := ProbeOrder(hash, writable)
	res.Classes = map[string]int{}
	delay := k.opts.RetryDelay
	for pass := 0; pass <= k.opts.Retries && len(pending) > 0; pass++ {
		if pass > 0 {
			wait := time.Millisecond + time.Duration(rand.Int64N(int64(delay)))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return res, fmt.Errorf("put block %s: %w", hash, ctx.Err())
			case <-t.C:
			}
			delay = min(delay*2, 10*k.opts.RetryDelay)
		}
		var retry []arvados.KeepService
		for len(pending) > 0 && res.Replicas < wanted {
			n := 1
			if allDisk {
				n = min(wanted-res.Replicas, len(pending))
			}
			batch := pending[:n]
			pending = pending[n:]
			outcomes := make([]putOutcome, len(batch))
			var wg sync.WaitGroup
			for i, s := range batch {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outcomes[i] = k.putOne(ctx, s, hash, data, wanted, classes, token, reqID, opts.RateLimit)
				}()
			}
			wg.Wait()
			for i, o := range outcomes {
				if o.err != nil {
					res.Failures = append(res.Failures, *o.err)
					if o.err.temporary() {
						retry = append(retry, batch[i])
					}
					continue
				}
				res.Locator = o.locator
				res.Replicas += o.replicas
				for c, n := range o.classes {
					res.Classes[c] += n
				}
			}
			if ctx.Err() != nil {
				return res, fmt.Errorf("put block %s: %w", hash, ctx.Err())
			}
		}
		if res.Replicas >= wanted {
			return res, nil
		}
		pending = retry
	}
	if res.Replicas >= wanted {
		return res, nil
	}
	msgs := make([]string, len(res.Failures))
	refused := len(res.Failures) > 0
	temporary := len(res.Failures) > 0
	for i, f := range res.Failures {
		msgs[i] = f.Error()
		refused = refused && (f.Status == http.StatusUnauthorized || f.Status == http.StatusForbidden)
		temporary = temporary && f.temporary()
	}
	err = fmt.Errorf("put block %s: %w: wanted %d, stored %d: %s", hash, ErrInsufficientReplicas, wanted, res.Replicas, strings.Join(msgs, "; "))
	switch {
	case refused:
		err = fmt.Errorf("%w: %w", ErrTokenRefused, err)
	case temporary:
		// Every service failed in a way that may pass (down, 5xx, 408,
		// 429): the caller may try again later (IsTemporary).
		err = temporaryError{err}
	}
	return res, err
}

type putOutcome struct {
	locator  string
	replicas int
	classes  map[string]int
	err      *ServiceError
}

func (k *Keep) putOne(ctx context.Context, s arvados.KeepService, hash string, data []byte, wanted int, classes []string, token, reqID string, rl *RateLimiter) putOutcome {
	return k.putRequest(ctx, s, hash, int64(len(data)), wanted, classes, token, reqID, func(ctx context.Context, req *http.Request, watch func(io.Reader) io.Reader) func() {
		// A fresh reader per attempt (this one, and GetBody's for a
		// redirect or a transport retry) so every send is whole, paced
		// (--bwlimit) and watched. All are shut before putOne returns.
		var mu sync.Mutex
		var bodies []*bodyReader
		newBody := func() (io.ReadCloser, error) {
			br := &bodyReader{data: data}
			mu.Lock()
			bodies = append(bodies, br)
			mu.Unlock()
			var r io.Reader = br
			if rl != nil {
				r = &pacedReader{ctx: ctx, r: r, l: rl}
			}
			return io.NopCloser(watch(r)), nil
		}
		req.Body, _ = newBody()
		req.GetBody = newBody
		return func() {
			mu.Lock()
			for _, b := range bodies {
				b.shut()
			}
			mu.Unlock()
		}
	})
}

// putRequest sends one PUT of a block of size bytes to s and reads the
// answer; putOne (a block in memory) and putStreamOne (a block streamed
// through) differ only in the body, which setBody gives the request when
// size > 0. Its watch wraps a body reader in the stall watchdog, which
// cancels the attempt when the body stops moving; it is paused while the
// server answers (ResponseHeaderTimeout's business). What setBody returns
// runs before putRequest returns.
func (k *Keep) putRequest(ctx context.Context, s arvados.KeepService, hash string, size int64, wanted int, classes []string, token, reqID string,
	setBody func(ctx context.Context, req *http.Request, watch func(io.Reader) io.Reader) (done func())) putOutcome {
	base := s.URL()
	fail := func(status int, err error) putOutcome {
		return putOutcome{err: &ServiceError{Service: base, Status: status, Err: err}}
	}
	stall := k.opts.StallTimeout
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/"+hash, http.NoBody)
	if err != nil {
		return fail(0, err)
	}
	req.ContentLength = size
	if size > 0 {
		req.GetBody = nil // NoBody's; a body that can be sent again sets its own
		defer setBody(ctx, req, func(r io.Reader) io.Reader {
			return &watchedReader{r: r, watchdog: watchdog, stall: stall}
		})()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Request-Id", reqID)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Keep-Desired-Replicas", strconv.Itoa(wanted))
	if len(classes) > 0 {
		req.Header.Set("X-Keep-Storage-Classes", strings.Join(classes, ", "))
	}
	resp, err := k.http.Do(req)
	if err != nil {
		if context.Cause(ctx) == errStalled {
			return fail(0, fmt.Errorf("%w for %v", errStalled, stall))
		}
		return fail(0, unwrapURLError(err))
	}
	defer resp.Body.Close()
	watchdog.Reset(stall) // the response body must move too
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	text := strings.TrimSpace(string(msg))
	if resp.StatusCode != http.StatusOK {
		return fail(resp.StatusCode, errors.New(truncate(text, 200)))
	}
	loc, err := arvados.ParseLocator(text)
	if err != nil || loc.Hash != hash || (loc.Size >= 0 && loc.Size != size) {
		// A 200 whose body is not a locator for this block stores nothing
		// we can reference.
		return fail(http.StatusBadGateway, fmt.Errorf("unexpected response body %q", truncate(text, 100)))
	}
	replicas := 1
	if h := resp.Header.Get("X-Keep-Replicas-Stored"); h != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
			replicas = n
		}
	}
	return putOutcome{locator: text, replicas: replicas, classes: parseClassesConfirmed(resp.Header.Get("X-Keep-Storage-Classes-Confirmed"))}
}

// parseClassesConfirmed parses "a=1, b=2"; malformed items are ignored.
func parseClassesConfirmed(h string) map[string]int {
	out := map[string]int{}
	for _, item := range strings.Split(h, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		if v, err := strconv.Atoi(n); err == nil && v > 0 && name != "" {
			out[name] += v
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Head checks that a block exists, trying services in probe order. locator
// should carry a signature when the cluster enforces them.
func (k *Keep) Head(ctx context.Context, locator string) error {
	_, err := k.fetch(ctx, http.MethodHead, locator)
	return err
}

// Get reads a block and checks its md5.
func (k *Keep) Get(ctx context.Context, locator string) ([]byte, error) {
	return k.fetch(ctx, http.MethodGet, locator)
}

func (k *Keep) fetch(ctx context.Context, method, locator string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	l, err := arvados.ParseLocator(locator)
	if err != nil {
		return nil, err
	}
	if l.Hash == arvados.EmptyHash && l.Size == 0 {
		return []byte{}, nil
	}
	svcs, err := k.Services(ctx)
	if err != nil {
		return nil, err
	}
	token := ""
	if k.api != nil {
		token = k.api.Token()
	}
	var errs []string
	for _, s := range ProbeOrder(l.Hash, svcs) {
		req, err := http.NewRequestWithContext(ctx, method, s.URL()+"/"+locator, nil)
		if err != nil {
			return nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-Request-Id", NewRequestID())
		resp, err := k.http.Do(req)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", s.URL(), unwrapURLError(err)))
			continue
		}
		limit := int64(arvados.BlockSize + 1)
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Sprintf("%s: [%d] %s", s.URL(), resp.StatusCode, truncate(strings.TrimSpace(string(body)), 200)))
			continue
		}
		if method == http.MethodHead {
			return nil, nil
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", s.URL(), err))
			continue
		}
		if arvados.HashOf(body) != l.Hash {
			errs = append(errs, fmt.Sprintf("%s: %v", s.URL(), ErrChecksum))
			continue
		}
		return body, nil
	}
	return nil, fmt.Errorf("%s block %s: %s", strings.ToLower(method), l.Stripped(), strings.Join(errs, "; "))
}

// watchedReader feeds a PUT body to the transport and keeps the attempt's
// stall watchdog from firing while bytes move; at EOF it pauses it.
type watchedReader struct {
	r        io.Reader
	watchdog *time.Timer
	stall    time.Duration
}

func (w *watchedReader) Read(b []byte) (int, error) {
	w.watchdog.Reset(w.stall)
	n, err := w.r.Read(b)
	if err == io.EOF {
		w.watchdog.Stop()
	} else {
		w.watchdog.Reset(w.stall)
	}
	return n, err
}

// errBodyShut is what a PUT body read after its attempt has ended returns.
var errBodyShut = errors.New("request body read after the PUT attempt ended")

// bodyReader reads a PUT body from the caller's slice until shut. The HTTP
// transport may go on reading a request body after Do has returned (when
// the server answered before reading it all); shutting every body before
// putOne returns guarantees Put never touches the caller's slice after it
// returns, so the caller may reuse the buffer at once.
type bodyReader struct {
	mu       sync.Mutex
	data     []byte
	off      int
	shutDown bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shutDown {
		return 0, errBodyShut
	}
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *bodyReader) shut() {
	b.mu.Lock()
	b.shutDown = true
	b.mu.Unlock()
}
