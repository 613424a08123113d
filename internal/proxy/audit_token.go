package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/keepclient"
)

// SetAuditToken replaces the token audit records are posted with ("" =
// the API client's own token) and retries delivery at once. The record
// being posted when it is called is posted with the old token; the
// deliverer is one goroutine that deletes a record only after the API
// server accepted it, so a token change loses and duplicates nothing.
func (s *Server) SetAuditToken(token string) {
	s.auditToken.Store(&token)
	s.refusal.mu.Lock()
	s.refusal.logged = time.Time{} // a new token's refusal is news: log it at once
	s.refusal.mu.Unlock()
	select {
	case s.auditKick <- struct{}{}:
	default:
	}
}

func (s *Server) currentAuditToken() string { return *s.auditToken.Load() }

// tokenRefused reports whether err says the API server refused the audit
// token (401: unknown, revoked or expired, e.g. past API.MaxTokenLifetime;
// 403: a scope or an identity that may not create the record). Retrying
// with the same token cannot help; only a new token can.
func tokenRefused(err error) bool {
	return errors.Is(err, keepclient.ErrTokenRefused) ||
		keepclient.IsStatus(err, http.StatusUnauthorized) || keepclient.IsStatus(err, http.StatusForbidden)
}

// auditRefusal is the state of a refused audit token: since when, the
// last error, and when it was last logged.
type auditRefusal struct {
	interval time.Duration
	now      func() time.Time // nil = time.Now

	mu     sync.Mutex
	since  time.Time // zero: the token is not refused
	err    string
	logged time.Time
}

func (r *auditRefusal) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// auditRefused records a refusal: the metric, the health check, and an
// error line at most once per AuditRefusedLogInterval.
func (s *Server) auditRefused(err error) {
	r := &s.refusal
	r.mu.Lock()
	now := r.clock()
	if r.since.IsZero() {
		r.since = now
	}
	r.err = err.Error()
	logIt := r.logged.IsZero() || now.Sub(r.logged) >= r.interval
	if logIt {
		r.logged = now
	}
	since := r.since
	r.mu.Unlock()
	s.metrics.auditRefused.Set(1)
	if logIt {
		s.log.Error("the API server refuses the audit token: audit records are kept in the spool, none is lost; "+
			"configure a valid audit token (arv-server proxy: write it to --audit-token-file and send SIGHUP)",
			"refused_since", since.UTC().Format(time.RFC3339), "spooled", s.spool.Depth(), "err", err)
	}
}

// auditAccepted clears a refusal once a record is accepted.
func (s *Server) auditAccepted() {
	r := &s.refusal
	r.mu.Lock()
	was := r.since
	r.since, r.err = time.Time{}, ""
	r.mu.Unlock()
	if !was.IsZero() {
		s.metrics.auditRefused.Set(0)
		s.log.Info("the API server accepts the audit token again: delivering the spooled audit records",
			"refused_since", was.UTC().Format(time.RFC3339), "spooled", s.spool.Depth())
	}
}

// auditRefusedHealth is the health check's error while the audit token is
// refused, else "".
func (s *Server) auditRefusedHealth() string {
	r := &s.refusal
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since.IsZero() {
		return ""
	}
	return fmt.Sprintf("audit token refused by the API server since %s (%d audit records spooled, none lost; block writes still work): %s; "+
		"configure a valid audit token and reload (SIGHUP)", r.since.UTC().Format(time.RFC3339), s.spool.Depth(), r.err)
}
