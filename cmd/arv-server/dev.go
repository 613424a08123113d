package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/devcluster"
)

func newDevCommand() *cobra.Command {
	var (
		dataDir string
		noProxy bool
		verbose bool
		prof    pprofFlag
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the API server, two keepstores and the proxy in one process on loopback",
		Long: `dev runs a whole cluster on 127.0.0.1 for development and demos: the API
server over HTTPS (self-signed certificate), two keepstores with directory
volumes and the proxy in front of them. It creates a non-admin demo user
and writes DIR/env with the ARVADOS_* variables a client needs:

    . DIR/env && export ARVADOS_API_HOST ARVADOS_API_TOKEN ARVADOS_API_HOST_INSECURE

The API server listens twice, as a real cluster is reached from outside
(through a front proxy that adds X-External-Client: 1) and from inside:
DIR/env names the outside address, whose clients are given the proxy (it
takes writes and, in dev, reads: arv-upload, arv-put, arv-get and the SDKs
work unchanged); DIR/env.internal names the inside address, whose clients
are given the keepstores directly.

Restarting on the same DIR keeps all data, tokens and (when free) ports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Start and stop always show; the servers' request lines only
			// with -v. One handler, so lines never interleave.
			life := newLogger(cmd.ErrOrStderr(), slog.LevelInfo)
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			logger := slog.New(leveled{life.Handler(), level})
			stopPprof, err := prof.start(life)
			if err != nil {
				return err
			}
			defer stopPprof()
			cl, err := devcluster.Start(cmd.Context(), devcluster.Options{
				Dir: dataDir, TLS: true, Proxy: !noProxy, Logger: logger,
			})
			if err != nil {
				return err
			}
			defer cl.Close()
			envPath := filepath.Join(dataDir, "env")
			if err := os.WriteFile(envPath+".internal", []byte(cl.InternalEnv()), 0o600); err != nil {
				return fmt.Errorf("write %s.internal: %w", envPath, err)
			}
			if err := os.WriteFile(envPath, []byte(cl.Env()), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", envPath, err)
			}
			life.Info("listening", "service", "api", "url", cl.Scheme+"://"+cl.APIHost)
			if cl.InternalAPIHost != cl.APIHost {
				life.Info("listening", "service", "api", "url", cl.Scheme+"://"+cl.InternalAPIHost, "for", "clients inside the cluster (given the keepstores)", "env", envPath+".internal")
			}
			for i, u := range cl.KeepstoreURLs {
				life.Info("listening", "service", "keepstore", "index", i, "url", u)
			}
			if cl.ProxyURL != "" {
				life.Info("listening", "service", "proxy", "url", cl.ProxyURL, "for", "clients outside the cluster (given the proxy)")
			}
			life.Info("ready", "env_file", envPath,
				"note", "client settings: the demo user's token, the admin token as ARVADOS_ADMIN_TOKEN; Ctrl-C to stop")
			<-cmd.Context().Done()
			life.Info("stopping")
			return cl.Close()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "directory for all state (created if missing)")
	cmd.Flags().BoolVar(&noProxy, "no-proxy", false, "do not run the proxy; clients write to the keepstores directly")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log every request (JSON lines on stderr)")
	prof.register(cmd.Flags())
	cmd.MarkFlagRequired("data")
	return cmd
}
