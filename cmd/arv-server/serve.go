package main

import (
	"context"
	"io"
	"log/slog"
	"net"
)

// newLogger is every daemon's logger: JSON lines on w, and nothing else
// is ever written there, so that a log shipper can parse each line.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
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
