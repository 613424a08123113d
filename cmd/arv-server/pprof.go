package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/spf13/pflag"
)

// pprofFlag is --pprof ADDR of every serving command: Go's profiles
// (net/http/pprof) on a listener of their own, never on the service's
// public one. Off unless given.
type pprofFlag struct{ addr string }

func (p *pprofFlag) register(fl *pflag.FlagSet) {
	fl.StringVar(&p.addr, "pprof", "", "serve Go profiles (net/http/pprof, /debug/pprof/) at [addr]:port, for debugging; "+
		"they show the program's internals and cost CPU while taken, so listen on localhost only, e.g. 127.0.0.1:6060 (default: off)")
}

// start listens on the flag's address, when given, and serves the
// profiles there until stop is called. It returns once the listener is
// open, so that a bad or busy address fails the start at once; a
// "listening" line with service "pprof" names the address.
func (p pprofFlag) start(log *slog.Logger) (stop func(), err error) {
	if p.addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--pprof): %w", p.addr, err)
	}
	if !isLoopback(ln.Addr()) {
		log.Warn("serving Go profiles on an address other machines can reach (--pprof): they show the program's internals to anyone who connects",
			"addr", ln.Addr().String())
	}
	srv := &http.Server{
		Handler:           pprofMux(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "service", "pprof", "url", serviceURL("http", ln.Addr()), "for", "debugging")
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Warn("pprof server stopped", "err", err.Error())
		}
	}()
	// Profiles in progress are cut: nothing depends on them.
	return func() { srv.Close() }, nil
}

// pprofMux routes /debug/pprof/ as net/http/pprof does on
// http.DefaultServeMux, which no arv-server listener serves.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, allocs...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
