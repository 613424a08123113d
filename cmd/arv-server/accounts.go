package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/broker"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Calls through the broker take seconds (each is a few upstream calls
// within a 20 s retry budget); 30 s lets them finish on SIGTERM.
const accountsShutdownTimeout = 30 * time.Second

type accountsFlags struct {
	listen         string
	tls            tlsFlags
	upstream       string
	adminTokenFile string
	insecure       bool
	pprof          pprofFlag
}

func newAccountsCommand() *cobra.Command {
	var f accountsFlags
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "Run the uploader-account broker in front of a real Arvados cluster",
		Long: `Serve /arvados/v1/uploader_accounts (create, list, get, deactivate) for a
cluster whose API server lacks it. Route that path to this service at the
site's front proxy. Callers authenticate with their own tokens; the broker
does the privileged calls with an admin token scoped to exactly:
  ` + strings.Join(broker.AdminScopes, "\n  ") + `
It stores nothing: accounts are users, permission links and tokens upstream.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAccounts(cmd.Context(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:25108", "address to listen on")
	f.tls.register(fl)
	fl.StringVar(&f.upstream, "upstream", "", "the cluster's API server: host:port for HTTPS, or http(s)://host:port; required")
	fl.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding an admin token scoped to the calls listed above; required")
	fl.BoolVar(&f.insecure, "insecure", envTrue("ARVADOS_API_HOST_INSECURE"), "skip TLS verification of the upstream")
	f.pprof.register(fl)
	return cmd
}

func runAccounts(ctx context.Context, stderr io.Writer, f accountsFlags) error {
	if f.upstream == "" {
		return errors.New("--upstream is required: the cluster's API server host:port")
	}
	if f.adminTokenFile == "" {
		return errors.New("--admin-token-file is required: see `arv-server accounts --help` for the token's scopes")
	}
	tlsConf, err := f.tls.load()
	if err != nil {
		return err
	}
	token, err := readSecretFile(f.adminTokenFile, "admin token")
	if err != nil {
		return err
	}
	scheme, host := apiHost(f.upstream)
	// A short retry budget: a caller waits on each call.
	api, err := keepclient.NewClient(keepclient.Config{APIHost: host, Scheme: scheme, Token: token, Insecure: f.insecure, MaxElapsed: 20 * time.Second})
	if err != nil {
		return fmt.Errorf("create API client: %w", err)
	}
	log := newLogger(stderr, slog.LevelInfo)
	stopPprof, err := f.pprof.start(log)
	if err != nil {
		return err
	}
	defer stopPprof()
	b, err := broker.New(broker.Options{Admin: api, Logger: log})
	if err != nil {
		return err
	}
	srv := newHTTPServer(b, log, tlsConf)
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, 2*time.Minute
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	if err := serve(ctx, log, "accounts", srv, ln, accountsShutdownTimeout, "upstream", scheme+"://"+host); err != nil {
		return err
	}
	log.Info("stopped", "service", "accounts")
	return nil
}
