// Command arv-server runs the server side of arv-upload: the Arvados API
// subset, keepstore, the write-only Keep proxy, or all of them at once on
// loopback for development (dev).
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCommand().ExecuteContext(ctx)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		os.Exit(130)
	default:
		// JSON like every other line a daemon writes.
		newLogger(os.Stderr, slog.LevelInfo).Error("arv-server stopped", "err", err.Error())
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "arv-server",
		Short:         "Arvados API subset, keepstore and write-only Keep proxy for arv-upload",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAPICommand(), newKeepstoreCommand(), newProxyCommand(), newAccountsCommand(), newDevCommand())
	return root
}
