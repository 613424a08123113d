// Package httpx holds the HTTP plumbing the daemons (keepstore, proxy,
// API server, accounts broker) share, so that each rule exists once:
// where a request's token is, which request IDs a client may choose, what
// the request log line says and at which level, how signatures are kept
// out of logs, how a management token is checked, which method names
// become metric labels; and Serve, the one serve/graceful-shutdown loop.
package httpx

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// BearerToken returns the token of an "Authorization: Bearer <token>" or
// "Authorization: OAuth2 <token>" header (PROTOCOL 1.2; OAuth2 is what
// pre-3.0 Arvados clients send), and whether there was a non-empty one.
// The scheme is matched without regard to case (RFC 7235 §2.1; upstream
// Arvados matches it exactly, so every client that works there works
// here), it must be followed by a space, and the token is trimmed of the
// spaces around it. Other schemes (Basic) and other places for a token
// (api_token, cookies) are each server's own business.
func BearerToken(r *http.Request) (string, bool) {
	return ParseAuthorization(r.Header.Get("Authorization"))
}

// TokenStatus is the status of a request for a route that needs the token
// want (the management token, keepstore's system root token), given the
// token got it carries: 401 when it carries none (got is ""), 403 when it
// carries another one (or want is "", which no token matches), else 200.
// The comparison takes the same time however much the two share.
func TokenStatus(got, want string) int {
	switch {
	case got == "":
		return http.StatusUnauthorized
	case want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
		return http.StatusForbidden
	}
	return http.StatusOK
}

// ParseAuthorization is BearerToken for an Authorization header's value.
func ParseAuthorization(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "OAuth2")) {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

var requestIDRE = regexp.MustCompile(`^[-0-9A-Za-z_.]{1,64}$`)

// ValidRequestID reports whether a client's X-Request-Id may be used (and
// logged) as it is: short, and of characters that cannot forge a log line.
func ValidRequestID(s string) bool { return requestIDRE.MatchString(s) }

// RequestID returns the ID of a request, the one rule of every server:
// the client's X-Request-Id when ValidRequestID accepts it, else a new
// one, so that what a client sends can neither forge a log line nor grow
// one without bound. The ID is set on r, for the handlers and the calls
// they make upstream, and on the response.
func RequestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if !ValidRequestID(id) {
		id = NewRequestID()
		r.Header.Set("X-Request-Id", id)
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

// NewRequestID returns "req-" and 20 characters of [0-9a-z] (PROTOCOL 1.3).
func NewRequestID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [20]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "req-" + string(b[:])
}

// RequestLevel is the level of a request's log line: refusals (401, 403)
// and overload (503) are warnings, other server errors errors.
func RequestLevel(status int) slog.Level {
	switch {
	case status == http.StatusServiceUnavailable:
		return slog.LevelWarn
	case status >= 500:
		return slog.LevelError
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// MethodLabel bounds a method metric label to the methods HTTP defines
// (and Keep's TOUCH): any token is a valid method, and a label per
// invented method would grow the metrics without bound (one that is not
// UTF-8 makes the Prometheus client panic).
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace, "TOUCH":
		return m
	}
	return "other"
}

var signHintRE = regexp.MustCompile(`\+[AR][^+/]*`)

// LogPath is a request path fit for a log: signature hints (+A..., +R...)
// removed, since a signed locator is a capability.
func LogPath(p string) string { return signHintRE.ReplaceAllString(p, "") }

// Access is what a daemon's request line says about a request beyond the
// request itself.
type Access struct {
	ID       string // the request ID (RequestID)
	Status   int    // the response status; 0 is 200 (nothing was written)
	BytesIn  int64  // request body bytes read
	BytesOut int64  // response body bytes written
	Duration time.Duration
}

// LogRequest writes the one line a daemon writes per request: message
// "request" at RequestLevel(status), with request_id, remote_addr, method,
// path (LogPath), status, bytes_in, bytes_out and duration_ms (a float),
// then the server's own extra fields (user_uuid, ...).
func LogRequest(ctx context.Context, log *slog.Logger, r *http.Request, a Access, extra ...slog.Attr) {
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	level := RequestLevel(status)
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := append([]slog.Attr{
		slog.String("request_id", a.ID),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("method", r.Method),
		slog.String("path", LogPath(r.URL.Path)),
		slog.Int("status", status),
		slog.Int64("bytes_in", a.BytesIn),
		slog.Int64("bytes_out", a.BytesOut),
		slog.Float64("duration_ms", float64(a.Duration.Microseconds())/1000),
	}, extra...)
	log.LogAttrs(ctx, level, "request", attrs...)
}

// Recorder remembers a response's status (0 until one is written) and
// counts its body bytes, for the request log and metrics. Unwrap keeps
// http.ResponseController working (deadlines).
type Recorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

func (r *Recorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.Bytes += int64(n)
	return n, err
}

func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
