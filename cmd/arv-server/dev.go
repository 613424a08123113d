package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/devcluster"
)

func newDevCommand() *cobra.Command {
	var (
		dataDir string
		noProxy bool
		verbose bool
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
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
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
			out := cmd.ErrOrStderr()
			fmt.Fprintf(out, "arv-server dev: API server   https://%s\n", cl.APIHost)
			if cl.InternalAPIHost != cl.APIHost {
				fmt.Fprintf(out, "arv-server dev: API server   https://%s (for clients inside the cluster: given the keepstores; %s.internal)\n", cl.InternalAPIHost, envPath)
			}
			for i, u := range cl.KeepstoreURLs {
				fmt.Fprintf(out, "arv-server dev: keepstore %d  %s\n", i, u)
			}
			if cl.ProxyURL != "" {
				fmt.Fprintf(out, "arv-server dev: keep proxy   %s (given to clients outside the cluster)\n", cl.ProxyURL)
			}
			fmt.Fprintf(out, "arv-server dev: client settings in %s (demo user token; admin token as ARVADOS_ADMIN_TOKEN)\n", envPath)
			fmt.Fprintf(out, "arv-server dev: ready; Ctrl-C to stop\n")
			<-cmd.Context().Done()
			fmt.Fprintf(out, "arv-server dev: stopping\n")
			return cl.Close()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "directory for all state (created if missing)")
	cmd.Flags().BoolVar(&noProxy, "no-proxy", false, "do not run the proxy; clients write to the keepstores directly")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log every request (JSON lines on stderr)")
	cmd.MarkFlagRequired("data")
	return cmd
}
