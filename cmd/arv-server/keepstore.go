package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/keepstore"
)

type keepstoreFlags struct {
	listen              string
	signingKeyFile      string
	systemRootTokenFile string
	managementTokenFile string
	storageClasses      []string
	shutdownTimeout     time.Duration
	pprof               pprofFlag
}

func newKeepstoreCommand() *cobra.Command {
	var (
		f    keepstoreFlags
		opts keepstore.Options
	)
	cmd := &cobra.Command{
		Use:   "keepstore",
		Short: "Run a Keep storage server on a directory",
		Long: `Run a keepstore: blocks are stored as <dir>/<hash[0:3]>/<hash>, written
durably. Secrets (signing key, tokens) are read from files, never given on
the command line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.StorageClasses = f.storageClasses
			return runKeepstore(cmd.Context(), cmd.ErrOrStderr(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", ":25107", "address to listen on")
	fl.StringVar(&opts.Dir, "dir", "", "directory volume holding the blocks (must exist); required")
	fl.BoolVar(&opts.RequireMount, "require-mount", false, "refuse a --dir that is not a mount point (its disk failed to mount)")
	fl.StringVar(&f.signingKeyFile, "signing-key-file", "", "file holding the blob signing key (none: locators are returned unsigned)")
	fl.DurationVar(&opts.TTL, "ttl", arvados.DefaultBlobSigningTTL, "blob signing TTL; must equal the API server's")
	fl.BoolVar(&opts.EnforceSigning, "enforce-signing", false, "require a valid signature on GET and HEAD (needs --signing-key-file)")
	fl.StringVar(&f.systemRootTokenFile, "system-root-token-file", "", "file holding the SystemRootToken, which may list blocks (/index)")
	fl.StringVar(&f.managementTokenFile, "management-token-file", "", "file holding the token for /_health/ping and /metrics (none: health disabled, metrics open)")
	fl.IntVar(&opts.MaxBuffers, "max-buffers", 8, "block memory in 64 MiB buffers: a GET holds one, a streamed PUT 1/16")
	fl.DurationVar(&opts.BufferWait, "buffer-wait", 5*time.Second, "how long a request waits for a free buffer before 503")
	fl.StringSliceVar(&f.storageClasses, "storage-classes", []string{"default"}, "storage classes this keepstore serves")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", time.Minute, "how long to wait for in-flight requests on SIGTERM")
	f.pprof.register(fl)
	return cmd
}

func runKeepstore(ctx context.Context, stderr io.Writer, f keepstoreFlags, opts keepstore.Options) error {
	if opts.Dir == "" {
		return fmt.Errorf("--dir is required")
	}
	var err error
	if f.signingKeyFile != "" {
		key, err := readSecretFile(f.signingKeyFile, "blob signing key")
		if err != nil {
			return err
		}
		opts.SigningKey = []byte(key)
	}
	if f.systemRootTokenFile != "" {
		if opts.SystemRootToken, err = readSecretFile(f.systemRootTokenFile, "system root token"); err != nil {
			return err
		}
	}
	if f.managementTokenFile != "" {
		if opts.ManagementToken, err = readSecretFile(f.managementTokenFile, "management token"); err != nil {
			return err
		}
	}
	log := newLogger(stderr, slog.LevelInfo)
	opts.Logger = log
	ks, err := keepstore.New(opts)
	if err != nil {
		return fmt.Errorf("start keepstore: %w", err)
	}
	srv := newHTTPServer(ks, log, nil)
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Minute, 10*time.Minute
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	defer ln.Close()
	stopPprof, err := f.pprof.start(log)
	if err != nil {
		return err
	}
	defer stopPprof()
	if err := serve(ctx, log, "keepstore", srv, ln, f.shutdownTimeout, "dir", opts.Dir,
		"signing", len(opts.SigningKey) > 0, "enforce_signing", opts.EnforceSigning, "max_buffers", opts.MaxBuffers); err != nil {
		return err
	}
	log.Info("stopped", "service", "keepstore")
	return ctx.Err()
}
