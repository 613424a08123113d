package keepclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// APIError is a failed API or Keep call: an HTTP status with the server's
// messages, or a transport error (Status 0, Err set).
type APIError struct {
	Method    string
	URL       string // without query string
	Status    int
	Errors    []string // from {"errors": [...]}, or a body excerpt
	RequestID string
	Err       error // transport error, when Status is 0
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Method, e.URL)
	if e.Status == 0 {
		fmt.Fprintf(&b, "%v", e.Err)
		switch {
		case errors.Is(e.Err, http.ErrSchemeMismatch):
			b.WriteString(" (the server speaks plain HTTP; check the API host and port)")
		case badCertificate(e.Err):
			b.WriteString(" (for a self-signed certificate set ARVADOS_API_HOST_INSECURE=1 or use --insecure)")
		}
	} else {
		fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
		if len(e.Errors) > 0 {
			fmt.Fprintf(&b, ": %s", strings.Join(e.Errors, "; "))
		}
	}
	if e.RequestID != "" && !strings.Contains(b.String(), e.RequestID) {
		fmt.Fprintf(&b, " (%s)", e.RequestID)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTokenRefused) true for a 401.
func (e *APIError) Is(target error) bool {
	return target == ErrTokenRefused && e.Status == http.StatusUnauthorized
}

// Temporary reports whether retrying may succeed: transport errors, 408,
// 429 and 5xx other than 507 (insufficient storage).
func (e *APIError) Temporary() bool {
	if e.Status == 0 {
		if e.Err == nil {
			return true
		}
		return !(errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) ||
			errors.Is(e.Err, http.ErrSchemeMismatch) || badCertificate(e.Err))
	}
	return temporaryStatus(e.Status)
}

func temporaryStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || (s >= 500 && s != http.StatusInsufficientStorage)
}

// IsTemporary reports whether err is worth retrying.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te temporaryError
	if errors.As(err, &te) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	// A local file error (permission denied, disk full) is not the
	// network's: syscall.Errno satisfies net.Error, so check first.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// IsStatus reports whether err is an APIError with the given status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

func newAPIError(method, u, reqID string, status int, body []byte) *APIError {
	e := &APIError{Method: method, URL: redactURL(u), Status: status, RequestID: reqID}
	var env struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		e.Errors = env.Errors
	} else if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		e.Errors = []string{s}
	}
	return e
}

// badCertificate reports a TLS certificate the client does not trust: a
// configuration problem that retrying cannot fix.
func badCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// temporaryError marks an error that retrying later may fix (every Keep
// service failed temporarily).
type temporaryError struct{ error }

func (e temporaryError) Unwrap() error { return e.error }
