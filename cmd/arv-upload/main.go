// Command arv-upload uploads a directory tree to Arvados as a collection.
//
// start, resume, status, abort and list run and inspect upload jobs
// (package agent, journal in package store); account manages uploader
// accounts (package admin). Credentials come from flags, then
// ARVADOS_API_HOST/ARVADOS_API_TOKEN/ARVADOS_API_HOST_INSECURE, then
// ~/.config/arvados/settings.conf.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/keepclient"
)

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first Ctrl-C stops the job cleanly (journal committed,
		// partial collection saved); a second one kills at once, which is
		// safe too (kill -9 is).
		<-ctx.Done()
		stop()
	}()
	err := newRootCommand().ExecuteContext(ctx)
	var ue usageError
	switch {
	case err == nil:
		os.Exit(0)
	case ctx.Err() != nil:
		os.Exit(130)
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "arv-upload:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "arv-upload:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "arv-upload",
		Short:         "Resumable bulk upload of a directory to an Arvados collection",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.String("api-host", "", "API server host:port (default $ARVADOS_API_HOST)")
	pf.String("token", "", "API token (default $ARVADOS_API_TOKEN)")
	pf.Bool("insecure", false, "skip TLS verification (default $ARVADOS_API_HOST_INSECURE)")
	root.AddCommand(newStartCommand(), newResumeCommand(), newStatusCommand(), newAbortCommand(), newListCommand(), newPruneCommand(),
		newAccountCommand(connect))
	return root
}

// connect builds an API client from flags, then the environment.
func connect(cmd *cobra.Command) (*keepclient.Client, error) {
	host, _ := cmd.Flags().GetString("api-host")
	token, _ := cmd.Flags().GetString("token")
	insecure, _ := cmd.Flags().GetBool("insecure")
	conf := settingsConf()
	get := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return conf[k]
	}
	if host == "" {
		host = get("ARVADOS_API_HOST")
	}
	if token == "" {
		token = get("ARVADOS_API_TOKEN")
	}
	if v := strings.ToLower(get("ARVADOS_API_HOST_INSECURE")); v == "1" || v == "true" || v == "yes" {
		insecure = true
	}
	if host == "" || token == "" {
		return nil, usageError{errors.New("no API host or token: use --api-host/--token or ARVADOS_API_HOST/ARVADOS_API_TOKEN")}
	}
	// ARVADOS_API_HOST is host[:port]; a URL is a common slip.
	switch {
	case strings.HasPrefix(host, "https://"):
		host = strings.TrimSuffix(strings.TrimPrefix(host, "https://"), "/")
	case strings.HasPrefix(host, "http://"):
		return nil, usageError{fmt.Errorf("API host %q: Arvados clients talk HTTPS; give host[:port] without http://", host)}
	}
	if strings.ContainsAny(host, "/ ") {
		return nil, usageError{fmt.Errorf("API host %q: give host[:port], e.g. zzzzz.example.org or 127.0.0.1:8000", host)}
	}
	c, err := keepclient.NewClient(keepclient.Config{APIHost: host, Token: token, Insecure: insecure})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	return c, nil
}
