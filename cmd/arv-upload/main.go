// Command arv-upload uploads a directory tree to Arvados as a collection.
//
// start, resume, status, abort, list and prune run and inspect upload
// jobs (package agent; journal in package store; the job's files, locks
// and listing in internal/jobs), one file a command; run.go wires a run
// and its progress printers (progress.go, bar.go). account manages uploader
// accounts (keepclient's uploader-account calls). Credentials come from flags, then
// ARVADOS_API_HOST/ARVADOS_API_TOKEN/ARVADOS_API_HOST_INSECURE, then
// ~/.config/arvados/settings.conf.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
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
		Use:   "arv-upload",
		Short: "Resumable bulk upload of a directory to an Arvados collection",
		Long: `arv-upload pushes directories and files into an Arvados collection over
days if need be: interrupt it at any time (Ctrl-C, kill -9, a reboot) and
'arv-upload resume' goes on where it stopped; network and server outages are
ridden out (--retry-for). Jobs are kept in $XDG_STATE_HOME/arv-upload
(default ~/.local/state/arv-upload).

Credentials: --api-host/--token, else ARVADOS_API_HOST, ARVADOS_API_TOKEN and
ARVADOS_API_HOST_INSECURE, else ~/.config/arvados/settings.conf (as the
Arvados tools read it).

Exit codes: 0 done; 1 failed (the message says why; a job stays resumable);
2 a mistake on the command line (nothing was started); 130 interrupted
(resumable).`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.String("api-host", "", "API server host:port (default $ARVADOS_API_HOST)")
	pf.String("token", "", "API token (default $ARVADOS_API_TOKEN)")
	pf.Bool("insecure", false, "skip TLS verification (default $ARVADOS_API_HOST_INSECURE)")
	root.AddCommand(newStartCommand(), newResumeCommand(), newStatusCommand(), newAbortCommand(), newListCommand(), newPruneCommand(),
		newAccountCommand(connect))
	// Shell completion (arv-upload completion bash|zsh|fish): job names
	// and flag values.
	for _, c := range root.Commands() {
		switch c.Name() {
		case "resume", "status", "abort":
			c.ValidArgsFunction = completeJobs
		}
		if c.Flags().Lookup("progress") != nil {
			c.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions([]string{"auto", "bar", "json", "summary", "none"}, cobra.ShellCompDirectiveNoFileComp))
		}
		if c.Flags().Lookup("job") != nil && c.Name() == "start" {
			c.RegisterFlagCompletionFunc("job", completeJobs)
		}
	}
	return root
}

// completeJobs completes the names of the jobs in the state directory.
func completeJobs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	sd, err := stateDir(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names, err := sd.List()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []string
	for _, j := range names {
		if strings.HasPrefix(j, toComplete) {
			out = append(out, j)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
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

// version is the module version and VCS revision the binary was built
// from (go build records them).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return fmt.Sprintf("%s (%s%s, %s)", v, rev, dirty, bi.GoVersion)
	}
	return fmt.Sprintf("%s (%s)", v, bi.GoVersion)
}

// settingsConf reads ~/.config/arvados/settings.conf (KEY=VALUE lines).
func settingsConf() map[string]string {
	out := map[string]string{}
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			// Not ".config" under the working directory: a settings file
			// there could send the token to another host.
			return out
		}
		base = filepath.Join(home, ".config")
	}
	f, err := os.Open(filepath.Join(base, "arvados", "settings.conf"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// tokenFingerprint identifies a token without revealing it: the UUID of a
// v2 token, else a short SHA-256.
func tokenFingerprint(tok string) string {
	if parts := strings.Split(tok, "/"); len(parts) >= 3 && parts[0] == "v2" {
		return parts[1]
	}
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:8])
}
