package apiserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/internal/httpx"
)

// Defaults of the request limits, applied by Open.
const (
	// Each request may hold a body of up to MaxRequestSize (128 MiB) in
	// memory while it is parsed, so 16 bound that at 2 GiB. API requests
	// take milliseconds and bbolt serializes writes: more in parallel would
	// wait inside instead of going faster.
	defaultMaxConcurrentRequests = 16
	// A live client on a slow link still sends a packet every few seconds;
	// one silent for 30 s is stalled or hostile and gives its slot back.
	defaultBodyIdleTimeout = 30 * time.Second
	// 128 MiB (the largest body) at about 220 kB/s. A body that arrives
	// slower than that, however steadily, holds a request slot too long.
	defaultBodyTimeout = 10 * time.Minute
	// The largest response (a list of big manifests) at the same slow rate.
	defaultWriteTimeout = 10 * time.Minute
)

// applyLimits fills in the defaults of the request limits and refuses
// negative ones.
func (o *Options) applyLimits() error {
	if o.MaxConcurrentRequests < 0 || o.BodyIdleTimeout < 0 || o.BodyTimeout < 0 || o.WriteTimeout < 0 {
		return fmt.Errorf("apiserver: negative request limit (MaxConcurrentRequests %d, BodyIdleTimeout %s, BodyTimeout %s, WriteTimeout %s)",
			o.MaxConcurrentRequests, o.BodyIdleTimeout, o.BodyTimeout, o.WriteTimeout)
	}
	if o.MaxConcurrentRequests == 0 {
		o.MaxConcurrentRequests = defaultMaxConcurrentRequests
	}
	if o.BodyIdleTimeout == 0 {
		o.BodyIdleTimeout = defaultBodyIdleTimeout
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = defaultBodyTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	return nil
}

// ServeHTTP is the middleware around every request: request ID, the
// management routes (/_health/ping, /metrics, outside the request limit so
// that a saturated server can still be watched), admission (503 and
// Retry-After beyond MaxConcurrentRequests), body and response deadlines,
// metrics and one log line. The API itself is serveAPI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := r.Header.Get("X-Request-Id")
	if !reqIDRe.MatchString(reqID) {
		reqID = httpx.NewRequestID()
		r.Header.Set("X-Request-Id", reqID)
	}
	w.Header().Set("X-Request-Id", reqID)
	rec := &httpx.Recorder{ResponseWriter: w}
	info := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	body := newDeadlineBody(w, r, s.opts.BodyIdleTimeout, start.Add(s.opts.BodyTimeout))
	r.Body = body
	// Unsupported only without a connection (httptest.ResponseRecorder).
	_ = http.NewResponseController(w).SetWriteDeadline(start.Add(s.opts.BodyTimeout + s.opts.WriteTimeout))
	route := routeOf(r.URL.Path)

	switch route {
	case "/_health/ping":
		s.serveHealth(rec, r)
	case "/metrics":
		if s.managementOK(rec, r, false) {
			s.metrics.handler.ServeHTTP(rec, r)
		}
	default:
		select {
		case s.slots <- struct{}{}:
			s.metrics.inFlight.Inc()
			s.serveAPI(rec, r)
			s.metrics.inFlight.Dec()
			<-s.slots
		default:
			rec.Header().Set("Retry-After", "1")
			writeError(rec, reqID, errorf(http.StatusServiceUnavailable,
				"server busy: %d requests in progress, the most it serves at once; retry in a second", s.opts.MaxConcurrentRequests))
		}
	}

	status := rec.Status
	if status == 0 {
		status = http.StatusOK
	}
	d := time.Since(start)
	code := strconv.Itoa(status)
	s.metrics.requests.WithLabelValues(route, httpx.MethodLabel(r.Method), code).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
	s.metrics.bytesIn.Add(float64(body.n))
	s.metrics.bytesOut.Add(float64(rec.Bytes))
	attrs := []slog.Attr{
		slog.String("request_id", reqID),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes_in", body.n),
		slog.Int64("bytes_out", rec.Bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	}
	if info.user != "" {
		attrs = append(attrs, slog.String("user_uuid", info.user))
	}
	s.log.LogAttrs(r.Context(), httpx.RequestLevel(status), "request", attrs...)
}

// serveHealth answers /_health/ping as keepstore and the proxy do (404
// without a ManagementToken, 401 without a token, 403 with another one),
// and checks that the store answers.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r.Header.Get("X-Request-Id"), errorf(http.StatusMethodNotAllowed, "use GET for %s", r.URL.Path))
		return
	}
	if !s.managementOK(w, r, true) {
		return
	}
	var u user
	if err := s.store.Get("users", s.systemUserUUID(), &u); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"health": "ERROR", "error": "store: " + err.Error()})
		return
	}
	writeJSON(w, map[string]string{"health": "OK"})
}

// managementOK checks the ManagementToken and answers the refusal itself.
// Without a token the health check is disabled (404) and metrics are open.
func (s *Server) managementOK(w http.ResponseWriter, r *http.Request, health bool) bool {
	want := s.opts.ManagementToken
	reqID := r.Header.Get("X-Request-Id")
	if want == "" {
		if health {
			writeError(w, reqID, errorf(http.StatusNotFound, "health check disabled: start the server with a management token"))
			return false
		}
		return true
	}
	got := ""
	if h := r.Header.Get("Authorization"); h != "" {
		for _, p := range []string{"Bearer ", "OAuth2 "} {
			if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
				got = strings.TrimSpace(h[len(p):])
			}
		}
	}
	if got == "" {
		writeError(w, reqID, errorf(http.StatusUnauthorized, "Not logged in: %s needs the management token", r.URL.Path))
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		writeError(w, reqID, errorf(http.StatusForbidden, "Forbidden: %s needs the management token", r.URL.Path))
		return false
	}
	return true
}

// reqInfo carries what the API learns about a request (its user) out to
// the log line.
type reqInfo struct{ user string }

type reqInfoKey struct{}

// setRequestUser records the authenticated user of r for the log line.
func setRequestUser(r *http.Request, uuid string) {
	if i, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		i.user = uuid
	}
}

// deadlineBody cuts a request body that stalls: before each read it sets
// the connection's read deadline to the idle timeout from now, capped by
// the deadline of the whole body. A read past the deadline fails with a 408
// apiError, which the handler answers; the server then closes the
// connection. The first deadline is set at once, so a handler that never
// reads the body cannot be held up either when the server discards what
// is left of it. At the end of the body the deadline is lifted, because
// net/http then waits on the connection to notice a client that leaves.
type deadlineBody struct {
	body io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	end  time.Time
	n    int64
	eof  bool
}

func newDeadlineBody(w http.ResponseWriter, r *http.Request, idle time.Duration, end time.Time) *deadlineBody {
	b := &deadlineBody{body: r.Body, rc: http.NewResponseController(w), idle: idle, end: end}
	if r.ContentLength != 0 {
		b.arm()
	}
	return b
}

func (b *deadlineBody) arm() {
	d := time.Now().Add(b.idle)
	if b.end.Before(d) {
		d = b.end
	}
	// Only a ResponseWriter without a connection (httptest.ResponseRecorder)
	// cannot set deadlines; it cannot stall either.
	_ = b.rc.SetReadDeadline(d)
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	b.arm()
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !time.Now().Before(b.end) {
			return n, errorf(http.StatusRequestTimeout, "request body took longer than the server allows; send it faster, or in smaller requests")
		}
		return n, errorf(http.StatusRequestTimeout, "request body stalled: nothing arrived for %s; check the network and retry", b.idle)
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }

// routeOf returns the metrics label of a path: the route with object IDs
// replaced by {id}, so that the label set stays small whatever clients
// send. Paths that match no route are "other".
func routeOf(p string) string {
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	switch p {
	case "/_health/ping", "/metrics", "/discovery/v1/apis/arvados/v1/rest", "/arvados/v1/config":
		return p
	}
	rest, ok := strings.CutPrefix(p, "/arvados/v1/")
	if !ok {
		return "other"
	}
	parts := strings.Split(rest, "/")
	if !routeResources[parts[0]] || len(parts) > 3 {
		return "other"
	}
	route := "/arvados/v1/" + parts[0]
	if len(parts) > 1 {
		switch id := parts[1]; {
		case id == "current" || id == "accessible":
			route += "/" + id
		case routeIDRe.MatchString(id):
			route += "/{id}"
		default:
			return "other"
		}
	}
	if len(parts) > 2 {
		if parts[2] != "deactivate" {
			return "other"
		}
		route += "/deactivate"
	}
	return route
}

var routeResources = map[string]bool{
	"users": true, "api_client_authorizations": true, "collections": true, "links": true,
	"logs": true, "keep_services": true, "uploader_accounts": true,
}

// routeIDRe matches what an object ID in a path can be: a UUID or a
// portable data hash (with or without hints).
var routeIDRe = regexp.MustCompile(`^([0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}|[0-9a-f]{32}(\+[0-9A-Za-z@_+-]*)?)$`)
