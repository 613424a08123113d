package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/apiserver"
	"github.com/arv-upload/arv-upload/keepclient"
)

func newAPICommand() *cobra.Command {
	var (
		opts             apiserver.Options
		listen           string
		tlsCert, tlsKey  string
		keepstores, pxys []string
	)
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Run the Arvados API server subset (embedded bbolt store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			for _, u := range keepstores {
				s, err := serviceFromURL(u, "disk", opts.ClusterID)
				if err != nil {
					return usageError{err}
				}
				opts.KeepServices = append(opts.KeepServices, s)
			}
			for _, u := range pxys {
				s, err := serviceFromURL(u, "proxy", opts.ClusterID)
				if err != nil {
					return usageError{err}
				}
				opts.ProxyServices = append(opts.ProxyServices, s)
			}
			srv, err := apiserver.Open(opts)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
			errc := make(chan error, 1)
			go func() {
				if tlsCert != "" {
					errc <- hs.ServeTLS(ln, tlsCert, tlsKey)
				} else {
					errc <- hs.Serve(ln)
				}
			}()
			fmt.Fprintf(cmd.ErrOrStderr(), "arv-server api: listening on %s; secrets in %s\n", ln.Addr(), opts.DataDir)
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8000", "address to listen on")
	f.StringVar(&opts.DataDir, "data", "", "data directory (store and bootstrap secrets)")
	f.StringVar(&opts.ClusterID, "cluster-id", "zzzzz", "five-character cluster ID")
	f.StringVar(&opts.ExternalURL, "external-url", "", "public URL of this server, e.g. https://api.example:443")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS key file (PEM)")
	f.StringArrayVar(&keepstores, "keepstore", nil, "internal keepstore URL (repeatable)")
	f.StringArrayVar(&pxys, "proxy", nil, "public keep proxy URL (repeatable)")
	f.DurationVar(&opts.BlobSigningTTL, "ttl", keepclient.DefaultBlobSigningTTL, "blob signing TTL")
	f.IntVar(&opts.DefaultReplication, "replication", 2, "default collection replication")
	f.BoolVar(&opts.DisableBlobSigning, "no-blob-signing", false, "locators carry no +A signature and none is checked (Collections.BlobSigning: false)")
	f.BoolVar(&opts.DisableCollectionVersioning, "no-collection-versioning", false, "keep no past versions of collections (Collections.CollectionVersioning: false)")
	f.DurationVar(&opts.PreserveVersionIfIdle, "preserve-version-if-idle", 10*time.Second, "an update this long after the previous one keeps the previous state as a past version (negative: only when preserve_version is set)")
	f.Var(managedPropertiesFlag{&opts.ManagedProperties}, "managed-properties", `collection properties the server sets on create, as JSON: {"key": {"Value": ..., "Function": "original_owner", "Protected": true}}`)
	f.StringSliceVar(&opts.Vocabulary, "vocabulary", nil, "strict vocabulary: the only property keys accepted on collections, groups and links (comma-separated)")
	cmd.MarkFlagRequired("data")
	return cmd
}

// serviceFromURL describes a keep service with the config-derived UUID of
// PROTOCOL 5.1 (15 hex characters of md5(URL)).
func serviceFromURL(raw, typ, cluster string) (keepclient.KeepService, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return keepclient.KeepService{}, fmt.Errorf("%q is not an http(s) URL", raw)
	}
	port, _ := strconv.Atoi(u.Port())
	if port == 0 {
		port = map[string]int{"http": 80, "https": 443}[u.Scheme]
	}
	var s keepclient.KeepService
	s.UUID = cluster + "-bi6l4-" + keepclient.HashOf([]byte(raw))[:15]
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
