package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/apiserver"
)

// Defaults of `arv-server api` that are the HTTP server's, not the API's.
const (
	// Headers are a few KiB; a client that has not sent them in 10 s is
	// stalled or hostile and gives its connection back.
	defaultAPIReadHeaderTimeout = 10 * time.Second
	// In-flight requests are short; 30 s lets them finish on SIGTERM.
	defaultAPIShutdownTimeout = 30 * time.Second
)

type apiFlags struct {
	listen              string
	tls                 tlsFlags
	insecureHTTP        bool
	keepstores, proxies []string
	managementTokenFile string
	readHeaderTimeout   time.Duration
	shutdownTimeout     time.Duration
	pprof               pprofFlag
}

func newAPICommand() *cobra.Command {
	var (
		f    apiFlags
		opts apiserver.Options
	)
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Run the Arvados API server subset (embedded bbolt store)",
		Long: `Run the API server subset on an embedded bbolt store in --data, which also
holds the bootstrap secrets (blob signing key, system root token, admin
token). Clients expect HTTPS: give --tls-cert and --tls-key. Plain HTTP is
served on a loopback address only, unless --insecure-http says that a TLS
proxy in front terminates HTTPS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAPI(cmd.Context(), cmd.ErrOrStderr(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8000", "address to listen on")
	fl.StringVar(&opts.DataDir, "data", "", "data directory (store and bootstrap secrets)")
	fl.StringVar(&opts.ClusterID, "cluster-id", "zzzzz", "five-character cluster ID")
	fl.StringVar(&opts.ExternalURL, "external-url", "", "public URL of this server, e.g. https://api.example:443")
	f.tls.register(fl)
	fl.BoolVar(&f.insecureHTTP, "insecure-http", false, "allow plain HTTP on a non-loopback address (only behind a proxy that terminates TLS)")
	fl.StringArrayVar(&f.keepstores, "keepstore", nil, "internal keepstore URL (repeatable)")
	fl.StringArrayVar(&f.proxies, "proxy", nil, "public keep proxy URL (repeatable)")
	fl.DurationVar(&opts.BlobSigningTTL, "ttl", arvados.DefaultBlobSigningTTL, "blob signing TTL")
	fl.IntVar(&opts.DefaultReplication, "replication", 2, "default collection replication")
	fl.StringArrayVar(&opts.AuditUsers, "audit-user", nil, "UUID of a user that may create block_put and other reserved log events, besides the system user (the proxy's service user; repeatable)")
	fl.StringVar(&f.managementTokenFile, "management-token-file", "", "file holding the token for /_health/ping and /metrics (none: health disabled, metrics open)")
	fl.IntVar(&opts.MaxConcurrentRequests, "max-concurrent-requests", 0, "API requests in progress (each may hold a 128 MiB body); more get 503 + Retry-After (0: 16)")
	fl.DurationVar(&f.readHeaderTimeout, "read-header-timeout", defaultAPIReadHeaderTimeout, "how long a client may take to send the request headers")
	fl.DurationVar(&opts.BodyIdleTimeout, "body-idle-timeout", 0, "longest pause while a request body arrives; longer gets 408 (0: 30s)")
	fl.DurationVar(&opts.BodyTimeout, "body-timeout", 0, "longest time to receive a whole request body (0: 10m)")
	fl.DurationVar(&opts.WriteTimeout, "write-timeout", 0, "longest time to send a response, after the body time (0: 10m)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", defaultAPIShutdownTimeout, "how long to wait for in-flight requests on SIGTERM")
	fl.BoolVar(&opts.DisableBlobSigning, "no-blob-signing", false, "locators carry no +A signature and none is checked (Collections.BlobSigning: false)")
	fl.BoolVar(&opts.DisableCollectionVersioning, "no-collection-versioning", false, "keep no past versions of collections (Collections.CollectionVersioning: false)")
	fl.DurationVar(&opts.PreserveVersionIfIdle, "preserve-version-if-idle", 10*time.Second, "an update this long after the previous one keeps the previous state as a past version (negative: only when preserve_version is set)")
	fl.Var(managedPropertiesFlag{&opts.ManagedProperties}, "managed-properties", `collection properties the server sets on create, as JSON: {"key": {"Value": ..., "Function": "original_owner", "Protected": true}}`)
	fl.StringSliceVar(&opts.Vocabulary, "vocabulary", nil, "strict vocabulary: the only property keys accepted on collections, groups and links (comma-separated)")
	f.pprof.register(fl)
	cmd.MarkFlagRequired("data")
	return cmd
}

func runAPI(ctx context.Context, stderr io.Writer, f apiFlags, opts apiserver.Options) error {
	log := newLogger(stderr, slog.LevelInfo)
	opts.Logger = log
	tlsConf, err := f.tls.load()
	if err != nil {
		return err
	}
	for _, u := range f.keepstores {
		s, err := serviceFromURL(u, "disk", opts.ClusterID)
		if err != nil {
			return usageError{err}
		}
		opts.KeepServices = append(opts.KeepServices, s)
	}
	for _, u := range f.proxies {
		s, err := serviceFromURL(u, "proxy", opts.ClusterID)
		if err != nil {
			return usageError{err}
		}
		opts.ProxyServices = append(opts.ProxyServices, s)
	}
	if f.managementTokenFile != "" {
		tok, err := readSecretFile(f.managementTokenFile, "management token")
		if err != nil {
			return err
		}
		opts.ManagementToken = tok
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	defer ln.Close()
	if tlsConf == nil {
		if !isLoopback(ln.Addr()) {
			if !f.insecureHTTP {
				return usageError{fmt.Errorf("refusing to serve plain HTTP on %s, which other machines can reach: "+
					"clients send their tokens in every request and expect HTTPS; give --tls-cert and --tls-key, "+
					"or --insecure-http when a proxy in front of this server terminates TLS", ln.Addr())}
			}
			log.Warn("serving plain HTTP on a non-loopback address (--insecure-http): tokens cross the network in the clear unless a proxy in front terminates TLS",
				"addr", ln.Addr().String())
		}
	}
	srv, err := apiserver.Open(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	stopPprof, err := f.pprof.start(log)
	if err != nil {
		return err
	}
	defer stopPprof()
	// The API's own deadlines cut slow bodies and responses; the HTTP
	// server bounds the headers, which come before any handler runs.
	hs := newHTTPServer(srv, log, tlsConf)
	hs.ReadHeaderTimeout = f.readHeaderTimeout
	if err := serve(ctx, log, "api", hs, ln, f.shutdownTimeout, "external_url", opts.ExternalURL, "data_dir", opts.DataDir); err != nil {
		return err
	}
	log.Info("stopped", "service", "api")
	return nil
}

// serviceFromURL describes a keep service with the config-derived UUID of
// PROTOCOL 5.1 (15 hex characters of md5(URL)).
func serviceFromURL(raw, typ, cluster string) (arvados.KeepService, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return arvados.KeepService{}, fmt.Errorf("%q is not an http(s) URL", raw)
	}
	port, _ := strconv.Atoi(u.Port())
	if port == 0 {
		port = map[string]int{"http": 80, "https": 443}[u.Scheme]
	}
	var s arvados.KeepService
	s.UUID = cluster + "-bi6l4-" + arvados.HashOf([]byte(raw))[:15]
	s.ServiceHost, s.ServicePort, s.ServiceSSLFlag, s.ServiceType = u.Hostname(), port, u.Scheme == "https", typ
	return s, nil
}

// usageError marks a bad flag value.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// managedPropertiesFlag reads --managed-properties as JSON.
type managedPropertiesFlag struct {
	m *map[string]apiserver.ManagedProperty
}

func (f managedPropertiesFlag) String() string {
	if f.m == nil || *f.m == nil {
		return ""
	}
	b, _ := json.Marshal(*f.m)
	return string(b)
}

func (f managedPropertiesFlag) Set(v string) error {
	var m map[string]apiserver.ManagedProperty
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf("want a JSON object of {\"Value\", \"Function\", \"Protected\"} by key: %w", err)
	}
	*f.m = m
	return nil
}

func (managedPropertiesFlag) Type() string { return "json" }
