package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/proxy"
	"github.com/arv-upload/arv-upload/keepclient"
)

type proxyFlags struct {
	listen              string
	tls                 tlsFlags
	apiHost             string
	insecure            bool
	serviceTokenFile    string
	auditTokenFile      string
	keepstores          []string
	authCacheTTL        time.Duration
	maxConcurrent       int
	maxPerUser          int
	retryBuffers        int
	maxQueued           int
	maxQueuedPerUser    int
	queueTimeout        time.Duration
	bodyIdleTimeout     time.Duration
	minBodyRate         int64
	minBodyRateWindow   time.Duration
	spoolDir            string
	enableReads         bool
	managementTokenFile string
	shutdownTimeout     time.Duration
	pprof               pprofFlag
}

func newProxyCommand() *cobra.Command {
	var f proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the public write-only Keep proxy in front of the internal keepstores",
		Long: `Run the write-only Keep proxy. It accepts PUT /<md5> and POST / from clients
with a valid token of an active user, stores each block on the internal
keepstores, returns the signed locator, and logs every stored block to the
API server (through a durable spool in --spool-dir) with the token in
--audit-token-file. SIGHUP re-reads that file: while the API server refuses
the token (it expired, say), records wait in the spool, /_health/ping
answers 503 and one error line a minute says so. See docs/DEPLOY.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProxy(cmd.Context(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", ":25107", "address to listen on")
	f.tls.register(fl)
	fl.StringVar(&f.apiHost, "api-host", os.Getenv("ARVADOS_API_HOST"), "API server host:port for HTTPS, or http://host:port (default $ARVADOS_API_HOST)")
	fl.BoolVar(&f.insecure, "insecure", envTrue("ARVADOS_API_HOST_INSECURE"), "skip TLS verification of the API server and keepstores")
	fl.StringVar(&f.serviceTokenFile, "service-token-file", "", "file holding the proxy's own API token: lists the keepstores when no --keepstore is given, and posts the audit logs when no --audit-token-file is given")
	fl.StringVar(&f.auditTokenFile, "audit-token-file", "", "file holding the token audit records (block_put logs) are posted with: a dedicated non-admin user's token scoped to POST /arvados/v1/logs (on arv-server api, name the user with --audit-user); re-read on SIGHUP (default: the service token, re-read on SIGHUP)")
	fl.StringArrayVar(&f.keepstores, "keepstore", nil, "internal keepstore URL (repeatable); default: the API's keep_services of type disk (needs an admin service token)")
	fl.DurationVar(&f.authCacheTTL, "auth-cache-ttl", 30*time.Second, "how long an accepted token is trusted before it is checked again: a deactivated account stops within this (an expiring token or account stops at its expires_at)")
	fl.IntVar(&f.maxConcurrent, "max-concurrent", proxy.DefaultMaxConcurrent, "block writes in progress, each holding a 1 MiB window, or a 64 MiB buffer for a slow client: the memory bound")
	fl.IntVar(&f.retryBuffers, "retry-buffers", 0, "block writes streamed to the keepstores that may also keep their whole block (64 MiB) so that a keepstore failing mid-block is replaced; 0 = a quarter of --max-concurrent, -1 = none (such a failure then answers 503 and the client resends)")
	fl.IntVar(&f.maxPerUser, "max-concurrent-per-user", 0, "block writes in progress per user (token owner); 0 = a quarter of --max-concurrent, so no one identity can take the proxy")
	fl.IntVar(&f.maxQueued, "max-queued", 0, "block writes waiting for a slot, in all; 0 = 4 x --max-concurrent, -1 = none (beyond: 503 + Retry-After)")
	fl.IntVar(&f.maxQueuedPerUser, "max-queued-per-user", 0, "block writes waiting per user; 0 = --max-concurrent-per-user, -1 = none")
	fl.DurationVar(&f.queueTimeout, "queue-timeout", proxy.DefaultQueueTimeout, "longest wait for a slot before 503 + Retry-After")
	fl.DurationVar(&f.bodyIdleTimeout, "body-idle-timeout", proxy.DefaultBodyIdleTimeout, "a client that sends no byte of its block for this long is cut (408); a slow client that keeps sending is not")
	fl.Int64Var(&f.minBodyRate, "min-body-rate", 0, "bytes/s a block body must average over each --min-body-rate-window, else 408; 0 = no rate check, only --body-idle-timeout")
	fl.DurationVar(&f.minBodyRateWindow, "min-body-rate-window", proxy.DefaultMinBodyRateWindow, "window of --min-body-rate")
	fl.StringVar(&f.spoolDir, "spool-dir", "", "directory of the durable audit spool; required")
	fl.BoolVar(&f.enableReads, "enable-reads", false, "also serve GET/HEAD of blocks (signatures are checked by the keepstores)")
	fl.StringVar(&f.managementTokenFile, "management-token-file", "", "file holding the token for /_health/ping and /metrics (none: both disabled; the proxy is public, so they are never open)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 5*time.Minute, "how long to wait for in-flight writes on SIGTERM")
	f.pprof.register(fl)
	return cmd
}

func envTrue(name string) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// readSecretFile returns the trimmed content of a token file.
func readSecretFile(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("read %s: %s is empty", what, path)
	}
	return s, nil
}

func runProxy(ctx context.Context, stderr io.Writer, f proxyFlags) error {
	if f.apiHost == "" {
		return errors.New("--api-host (or ARVADOS_API_HOST) is required")
	}
	if f.serviceTokenFile == "" && f.auditTokenFile == "" {
		return errors.New("--audit-token-file (or --service-token-file) is required: the proxy logs every block with its own token")
	}
	if f.serviceTokenFile == "" && len(f.keepstores) == 0 {
		return errors.New("--keepstore is required without --service-token-file: listing the keepstores needs a token")
	}
	if f.spoolDir == "" {
		return errors.New("--spool-dir is required: audit records are spooled there until the API server has them")
	}
	tlsConf, err := f.tls.load()
	if err != nil {
		return err
	}
	var token, auditToken string
	if f.serviceTokenFile != "" {
		if token, err = readSecretFile(f.serviceTokenFile, "service token"); err != nil {
			return err
		}
	}
	// The audit token's file; without --audit-token-file the service
	// token posts the audit logs, and SIGHUP re-reads its file instead.
	auditFile := f.auditTokenFile
	if auditFile == "" {
		auditFile = f.serviceTokenFile
	}
	if auditToken, err = readSecretFile(auditFile, "audit token"); err != nil {
		return err
	}
	var mgmt string
	if f.managementTokenFile != "" {
		if mgmt, err = readSecretFile(f.managementTokenFile, "management token"); err != nil {
			return err
		}
	}
	log := newLogger(stderr, slog.LevelInfo)
	stopPprof, err := f.pprof.start(log)
	if err != nil {
		return err
	}
	defer stopPprof()

	scheme, host := apiHost(f.apiHost)
	api, err := keepclient.NewClient(keepclient.Config{APIHost: host, Scheme: scheme, Token: token, Insecure: f.insecure})
	if err != nil {
		return fmt.Errorf("create API client: %w", err)
	}
	services, err := keepstoreServices(ctx, api, f.keepstores)
	if err != nil {
		return err
	}
	// Upstream settings of keepproxy (PROTOCOL 7.4), plus the Via header;
	// bodies go out as the Keep client sends them (in 256 KiB writes).
	tr := keepclient.NewKeepTransport(nil, &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 180 * time.Second})
	tr.TLSHandshakeTimeout = 4 * time.Second
	tr.MaxIdleConns = 100
	tr.MaxIdleConnsPerHost = 100
	tr.IdleConnTimeout = 90 * time.Second
	if f.insecure {
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	keepHTTP := &http.Client{Transport: proxy.ViaTransport(tr), Timeout: 300 * time.Second}
	// The proxy forwards the cluster's default storage classes itself when
	// a client names none.
	keep := keepclient.NewKeep(api, keepclient.KeepOptions{Services: services, HTTPClient: keepHTTP})

	px, err := proxy.New(proxy.Options{
		API: api, Keep: keep, Services: services, HTTPClient: keepHTTP,
		AuthCacheTTL:  f.authCacheTTL,
		MaxConcurrent: f.maxConcurrent, MaxConcurrentPerUser: f.maxPerUser, RetryBuffers: f.retryBuffers,
		MaxQueued: f.maxQueued, MaxQueuedPerUser: f.maxQueuedPerUser, QueueTimeout: f.queueTimeout,
		BodyIdleTimeout: f.bodyIdleTimeout, MinBodyRate: f.minBodyRate, MinBodyRateWindow: f.minBodyRateWindow,
		SpoolDir: f.spoolDir, AuditToken: auditToken,
		EnableReads: f.enableReads, ManagementToken: mgmt, Logger: log,
	})
	if err != nil {
		return err
	}
	// SIGHUP re-reads the audit token (one that expired under
	// API.MaxTokenLifetime, say): the spooled records then go out.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone := make(chan struct{})
	defer func() { signal.Stop(hup); close(hupDone) }()
	go func() {
		for {
			select {
			case <-hup:
				reloadAuditToken(px, auditFile, log)
			case <-hupDone:
				return
			}
		}
	}()
	// Delivery outlives the signal: Close stops it after the in-flight
	// writes and a short drain of the spool.
	if err := px.Start(context.WithoutCancel(ctx)); err != nil {
		px.Close()
		return err
	}
	srv := newHTTPServer(px, log, tlsConf)
	// ReadTimeout covers the headers and the wait for a slot; a block body
	// then has its own deadlines (--body-idle-timeout, --min-body-rate),
	// however long a slow link takes. The proxy also gives each PUT's
	// response a fresh write deadline.
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Minute, 10*time.Minute
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		px.Close()
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	err = serve(ctx, log, "proxy", srv, ln, f.shutdownTimeout, "keepstores", len(services), "reads", f.enableReads)
	// After the writes in flight: Close ends the audit delivery after a
	// short drain of the spool.
	if cerr := px.Close(); cerr != nil {
		return fmt.Errorf("close proxy: %w", cerr)
	}
	if err != nil {
		return err
	}
	log.Info("stopped", "service", "proxy")
	return nil // a requested shutdown that finished cleanly is a success
}

// reloadAuditToken reads the audit token from path and gives it to the
// proxy, which retries delivery at once. A file that cannot be read or is
// empty leaves the current token in place. SIGHUP calls it.
func reloadAuditToken(px *proxy.Server, path string, log *slog.Logger) error {
	tok, err := readSecretFile(path, "audit token")
	if err != nil {
		err = fmt.Errorf("reload audit token (keeping the current one; fix the file and send SIGHUP again): %w", err)
		log.Error("reload audit token", "service", "proxy", "err", err.Error())
		return err
	}
	px.SetAuditToken(tok)
	log.Info("reloaded the audit token", "service", "proxy", "file", path, "spooled", px.SpoolDepth())
	return nil
}

// keepstoreServices returns the internal keepstores: the --keepstore URLs
// (as disk services with fake UUIDs, so writes go out in parallel), else the
// API's keep_services of type disk.
func keepstoreServices(ctx context.Context, api *keepclient.Client, urls []string) ([]arvados.KeepService, error) {
	if len(urls) > 0 {
		svcs := keepclient.ServicesFromEnv(strings.Join(urls, " "))
		if len(svcs) != len(urls) {
			return nil, fmt.Errorf("parse --keepstore URLs %q: want absolute http(s) URLs", urls)
		}
		for i := range svcs {
			svcs[i].ServiceType = "disk"
		}
		return svcs, nil
	}
	list, err := api.KeepServices(ctx)
	if err != nil {
		hint := "is the API server reachable at --api-host? or give --keepstore"
		if errors.Is(err, keepclient.ErrTokenRefused) || keepclient.IsStatus(err, http.StatusUnauthorized) || keepclient.IsStatus(err, http.StatusForbidden) {
			hint = "the API server refused the proxy's token: check the token file"
		}
		return nil, fmt.Errorf("list keep services from the API server (%s): %w", hint, err)
	}
	var disks []arvados.KeepService
	for _, s := range list {
		if s.ServiceType == "disk" && !s.ReadOnly {
			disks = append(disks, s)
		}
	}
	if len(disks) == 0 {
		return nil, errors.New("no disk keep services listed by the API server; give --keepstore")
	}
	return disks, nil
}
