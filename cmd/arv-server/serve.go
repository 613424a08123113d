package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/arv-upload/arv-upload/internal/httpx"
	"github.com/spf13/pflag"
)

// newLogger is every daemon's logger: JSON lines on w, and nothing else
// is ever written there, so that a log shipper can parse each line.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// tlsFlags are --tls-cert and --tls-key, of the daemons that can serve
// HTTPS.
type tlsFlags struct{ cert, key string }

func (t *tlsFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&t.cert, "tls-cert", "", "TLS certificate file (PEM); serves HTTPS with --tls-key")
	fl.StringVar(&t.key, "tls-key", "", "TLS private key file (PEM)")
}

// load returns the TLS configuration of the flags, or nil when neither is
// given (plain HTTP). It is called before anything else starts, so that
// a bad pair fails the start at once.
func (t tlsFlags) load() (*tls.Config, error) {
	if (t.cert == "") != (t.key == "") {
		return nil, usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	if t.cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate and key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// apiHost reads an API server flag (--api-host, --upstream): host:port
// for HTTPS, or a URL to choose the scheme, http(s)://host:port.
func apiHost(s string) (scheme, host string) {
	if u, err := url.Parse(s); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
		return u.Scheme, u.Host
	}
	return "https", s
}

// newHTTPServer is every daemon's HTTP server: headers within 10 s (they
// are a few KiB; a client that has not sent them by then is stalled or
// hostile), idle connections kept 2 minutes, the server's own complaints
// (TLS handshakes, say) as WARN lines in the JSON log, TLS when tlsConf
// is set. A daemon adds its body and response timeouts.
func newHTTPServer(h http.Handler, log *slog.Logger, tlsConf *tls.Config) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConf,
	}
}

// serve runs srv on ln until ctx ends, then shuts it down, giving the
// requests in flight up to shutdownTimeout (httpx.Serve). It logs the
// lines every daemon writes: "listening" with the service's URL and attrs,
// and "shutting down" when ctx ends. The caller logs "stopped" once its
// own cleanup is done.
func serve(ctx context.Context, log *slog.Logger, service string, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration, attrs ...any) error {
	scheme := "http"
	if srv.TLSConfig != nil { // read before serving, which changes it
		scheme = "https"
	}
	log.Info("listening", append([]any{"service", service, "url", serviceURL(scheme, ln.Addr())}, attrs...)...)
	// Serve sees the end of ctx only after the line is written, so it
	// always comes, and before whatever the caller logs next.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	served := make(chan struct{})
	defer close(served)
	go func() {
		select {
		case <-ctx.Done():
			log.Info("shutting down: finishing in-flight requests", "service", service, "timeout", shutdownTimeout.String())
			stop()
		case <-served:
		}
	}()
	return httpx.Serve(sctx, srv, ln, shutdownTimeout)
}

// serviceURL is the URL a listener serves, "scheme://host:port". An
// unspecified address (all interfaces) keeps its literal form, 0.0.0.0 or
// [::], since no one name stands for every interface.
func serviceURL(scheme string, addr net.Addr) string {
	return scheme + "://" + addr.String()
}

// isLoopback reports whether addr only accepts connections from this
// machine.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// leveled passes the records at or above min to a shared handler, so that
// loggers of different levels write through one handler (and its lock)
// and their lines never interleave.
type leveled struct {
	slog.Handler
	min slog.Level
}

func (l leveled) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= l.min && l.Handler.Enabled(ctx, level)
}

func (l leveled) WithAttrs(attrs []slog.Attr) slog.Handler {
	return leveled{l.Handler.WithAttrs(attrs), l.min}
}

func (l leveled) WithGroup(name string) slog.Handler {
	return leveled{l.Handler.WithGroup(name), l.min}
}
