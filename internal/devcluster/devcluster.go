// Package devcluster runs a whole Arvados write path in one process on
// loopback: the API server subset, two keepstores with directory volumes and,
// optionally, the write-only Keep proxy in front of them. `arv-server dev` and
// the end-to-end tests use it.
//
// Everything lives under Options.Dir: api/ (the API server's bbolt store and
// bootstrap secrets), keep0/ and keep1/ (volumes), proxy-spool/, the
// self-signed TLS pair, demo-token (the non-admin demo user's token, 0600)
// and ports.json, so a restart on the same directory keeps its data, its
// tokens and, when the ports are still free, its addresses. A lock file
// keeps a second cluster off a directory in use (ErrDirInUse).
package devcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/apiserver"
	"github.com/arv-upload/arv-upload/internal/keepstore"
	"github.com/arv-upload/arv-upload/internal/proxy"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Options configures a dev cluster. The zero value (with Dir set) runs the
// API and the keepstores over plain HTTP without a proxy.
type Options struct {
	Dir        string       // required: all state lives here
	TLS        bool         // serve the API and the proxy over HTTPS with a self-signed pair
	Proxy      bool         // run the write-only proxy and list it for clients
	Keepstores int          // number of keepstores; 0 = 2
	Logger     *slog.Logger // nil = discard
	// AuthCacheTTL for the proxy; 0 = the proxy's default.
	AuthCacheTTL time.Duration
	// WrapKeepstore, when set, wraps each keepstore handler (fault injection
	// and request counting in tests).
	WrapKeepstore func(i int, h http.Handler) http.Handler
	// WrapAPI, when set, wraps the API server handler (fault injection in
	// tests). The proxy's own API calls go through it too.
	WrapAPI func(h http.Handler) http.Handler
	// KeepstoreClock, when set, is every keepstore's signing clock (see
	// keepstore.Options.Clock).
	KeepstoreClock func() time.Time
	// APIOptions, when set, changes the API server's options before it
	// starts (a site's settings: blob signing off, a short signing TTL,
	// versioning, managed properties, a strict vocabulary). The keepstores
	// follow its blob signing settings.
	APIOptions func(*apiserver.Options)
}

// Cluster is a running dev cluster.
type Cluster struct {
	// APIHost is host:port of the API server as clients outside the
	// cluster reach it: with a proxy, requests there carry
	// X-External-Client: 1 (as a site's front proxy adds), so they are
	// given the proxy; InternalAPIHost is the same server for clients
	// inside, who are given the keepstores. Without a proxy both are one.
	APIHost         string
	InternalAPIHost string
	Insecure        bool   // true when TLS is on (self-signed)
	Scheme          string // "https" or "http"
	AdminToken      string
	SystemRootToken string
	UserToken       string // a non-admin active user ("demo")
	KeepstoreURLs   []string
	ProxyURL        string
	API             *apiserver.Server
	Proxy           *proxy.Server

	servers []*http.Server
	wg      sync.WaitGroup
	closers []func() error
	log     *slog.Logger
}

const clusterID = "zzzzz"

// ErrDirInUse means another running cluster holds Options.Dir.
var ErrDirInUse = errors.New("data directory in use")

// Start brings the cluster up and returns once every server accepts
// connections.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Dir == "" {
		return nil, errors.New("devcluster: Options.Dir is required")
	}
	if opts.Keepstores == 0 {
		opts.Keepstores = 2
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", opts.Dir, err)
	}
	release, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	// c, not the result: "return nil, err" sets the result to nil before
	// this runs, and what was started must still be stopped.
	c := &Cluster{Scheme: "http", closers: []func() error{release}, log: log}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ports := loadPorts(filepath.Join(opts.Dir, "ports.json"))
	var tlsConf *tls.Config
	if opts.TLS {
		cert, err := loadOrCreateCert(opts.Dir)
		if err != nil {
			return nil, err
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.Scheme, c.Insecure = "https", true
	}

	apiLn, err := listen(ports["api"])
	if err != nil {
		return nil, err
	}
	c.APIHost = apiLn.Addr().String()
	c.InternalAPIHost = c.APIHost
	var intLn net.Listener // with a proxy: the address for clients inside the cluster
	if opts.Proxy {
		if intLn, err = listen(ports["api_internal"]); err != nil {
			apiLn.Close()
			return nil, err
		}
		c.InternalAPIHost = intLn.Addr().String()
		c.closers = append(c.closers, func() error { intLn.Close(); return nil })
	}
	// No ExternalURL: the discovery document's rootUrl is the address
	// each client used, so both addresses describe themselves.
	apiOpts := apiserver.Options{
		DataDir:   filepath.Join(opts.Dir, "api"),
		ClusterID: clusterID,
		Logger:    log.With("service", "api"),
	}
	if opts.APIOptions != nil {
		opts.APIOptions(&apiOpts)
	}
	api, err := apiserver.Open(apiOpts)
	if err != nil {
		apiLn.Close()
		return nil, fmt.Errorf("start api server: %w", err)
	}
	c.API = api
	c.closers = append(c.closers, api.Close)
	c.AdminToken, c.SystemRootToken = api.AdminToken(), api.SystemRootToken()

	var disks []arvados.KeepService
	for i := 0; i < opts.Keepstores; i++ {
		ln, err := listen(ports["keep"+strconv.Itoa(i)])
		if err != nil {
			apiLn.Close()
			return nil, err
		}
		// keepstore never creates its volume directory (a missing one is
		// usually an unmounted disk); the dev cluster owns its own.
		volDir := filepath.Join(opts.Dir, "keep"+strconv.Itoa(i))
		if err := os.MkdirAll(volDir, 0o700); err != nil {
			ln.Close()
			apiLn.Close()
			return nil, fmt.Errorf("create keepstore %d volume: %w", i, err)
		}
		key := api.SigningKey()
		if apiOpts.DisableBlobSigning {
			key = nil
		}
		ks, err := keepstore.New(keepstore.Options{
			Dir:             volDir,
			SigningKey:      key,
			EnforceSigning:  key != nil,
			TTL:             apiOpts.BlobSigningTTL,
			SystemRootToken: api.SystemRootToken(),
			Logger:          log.With("service", "keepstore", "index", i),
			Clock:           opts.KeepstoreClock,
		})
		if err != nil {
			ln.Close()
			apiLn.Close()
			return nil, fmt.Errorf("start keepstore %d: %w", i, err)
		}
		var h http.Handler = ks
		if opts.WrapKeepstore != nil {
			h = opts.WrapKeepstore(i, h)
		}
		c.serve(ln, h, nil)
		u := "http://" + ln.Addr().String()
		c.KeepstoreURLs = append(c.KeepstoreURLs, u)
		disks = append(disks, service(u, "disk"))
	}

	var proxies []arvados.KeepService
	if opts.Proxy {
		ln, err := listen(ports["proxy"])
		if err != nil {
			apiLn.Close()
			return nil, err
		}
		apiClient, err := keepclient.NewClient(keepclient.Config{
			APIHost: c.InternalAPIHost, Token: api.SystemRootToken(), Insecure: c.Insecure, Scheme: c.Scheme,
		})
		if err != nil {
			ln.Close()
			apiLn.Close()
			return nil, err
		}
		px, err := proxy.New(proxy.Options{
			API: apiClient,
			// Via marks upstream requests as proxied, as keepproxy does.
			Keep: keepclient.NewKeep(apiClient, keepclient.KeepOptions{Services: disks,
				HTTPClient: &http.Client{Transport: proxy.ViaTransport(keepclient.NewKeepTransport(nil, nil)), Timeout: 10 * time.Minute}}),
			AuthCacheTTL: opts.AuthCacheTTL,
			// Clients outside are given only the proxy (as on a real
			// cluster), so it serves their reads too, as keepproxy does.
			EnableReads: true,
			Services:    disks,
			SpoolDir:    filepath.Join(opts.Dir, "proxy-spool"),
			Logger:      log.With("service", "proxy"),
		})
		if err != nil {
			ln.Close()
			apiLn.Close()
			return nil, fmt.Errorf("start proxy: %w", err)
		}
		c.Proxy = px
		c.closers = append(c.closers, px.Close)
		if err := px.Start(ctx); err != nil {
			ln.Close()
			apiLn.Close()
			return nil, fmt.Errorf("start proxy: %w", err)
		}
		c.serve(ln, px, tlsConf)
		c.ProxyURL = c.Scheme + "://" + ln.Addr().String()
		proxies = append(proxies, service(c.ProxyURL, "proxy"))
	}
	if err := api.SetKeepServices(disks, proxies); err != nil {
		apiLn.Close()
		return nil, fmt.Errorf("register keep services: %w", err)
	}
	var apiHandler http.Handler = api
	if opts.WrapAPI != nil {
		apiHandler = opts.WrapAPI(apiHandler)
	}
	if intLn != nil {
		c.serve(intLn, apiHandler, tlsConf)
		c.serve(apiLn, externalClient(apiHandler), tlsConf)
	} else {
		c.serve(apiLn, apiHandler, tlsConf)
	}

	if err := c.ensureDemoUser(ctx, filepath.Join(opts.Dir, "demo-token")); err != nil {
		return nil, err
	}
	c.savePorts(filepath.Join(opts.Dir, "ports.json"))
	return c, nil
}

// Client returns an API client for token, configured for this cluster.
func (c *Cluster) Client(token string) *keepclient.Client {
	cl, err := keepclient.NewClient(keepclient.Config{APIHost: c.APIHost, Token: token, Insecure: c.Insecure, Scheme: c.Scheme})
	if err != nil {
		panic(err) // only invalid static config can fail here
	}
	return cl
}

// externalClient marks every request as coming from outside the cluster,
// as a site's front proxy does (nginx: proxy_set_header X-External-Client 1).
func externalClient(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-External-Client", "1")
		h.ServeHTTP(w, r)
	})
}

// InternalClient returns an API client for token that reaches the
// cluster as a client inside it (given the keepstores).
func (c *Cluster) InternalClient(token string) *keepclient.Client {
	cl, err := keepclient.NewClient(keepclient.Config{APIHost: c.InternalAPIHost, Token: token, Insecure: c.Insecure, Scheme: c.Scheme})
	if err != nil {
		panic(err) // only invalid static config can fail here
	}
	return cl
}

// Env returns the shell lines a client outside the cluster needs, in the
// arv-put convention; InternalEnv the same for a client inside it.
func (c *Cluster) Env() string { return c.env(c.APIHost) }

// InternalEnv: see Env.
func (c *Cluster) InternalEnv() string { return c.env(c.InternalAPIHost) }

func (c *Cluster) env(host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ARVADOS_API_HOST=%s\n", host)
	fmt.Fprintf(&b, "ARVADOS_API_TOKEN=%s\n", c.UserToken)
	if c.Insecure {
		b.WriteString("ARVADOS_API_HOST_INSECURE=1\n")
	}
	fmt.Fprintf(&b, "ARVADOS_ADMIN_TOKEN=%s\n", c.AdminToken)
	return b.String()
}

// Close stops every server, letting in-flight requests finish, and closes
// the stores.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, s := range c.servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	c.wg.Wait()
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.servers, c.closers = nil, nil
	return errors.Join(errs...)
}

func (c *Cluster) serve(ln net.Listener, h http.Handler, tlsConf *tls.Config) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// The servers' own complaints (TLS handshakes, accept errors) go
		// to the cluster's log, not as plain text to stderr.
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	c.servers = append(c.servers, srv)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// Close shuts the servers down (ErrServerClosed); anything else
		// means a server stopped serving while the cluster runs.
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("server stopped serving", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

func (c *Cluster) ensureDemoUser(ctx context.Context, path string) error {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		c.UserToken = strings.TrimSpace(string(b))
		return nil
	}
	_, tok, err := c.API.CreateUser(ctx, arvados.User{
		Email: "demo@example.com", Username: "demo", FullName: "Demo User",
		FirstName: "Demo", LastName: "User", IsActive: true,
	})
	if err != nil {
		return fmt.Errorf("create demo user: %w", err)
	}
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	c.UserToken = tok
	return nil
}

// service describes a keep service at rawURL with the config-derived UUID
// rule of PROTOCOL 5.1 (Go: 15 hex characters of md5(URL)).
func service(rawURL, typ string) arvados.KeepService {
	u, _ := url.Parse(rawURL)
	port, _ := strconv.Atoi(u.Port())
	sum := md5.Sum([]byte(rawURL + "/"))
	var ks arvados.KeepService
	ks.UUID = clusterID + "-bi6l4-" + hex.EncodeToString(sum[:])[:15]
	ks.Kind = "arvados#keepService"
	ks.OwnerUUID = clusterID + "-tpzed-000000000000000"
	ks.ServiceHost = u.Hostname()
	ks.ServicePort = port
	ks.ServiceSSLFlag = u.Scheme == "https"
	ks.ServiceType = typ
	return ks
}

// listen binds 127.0.0.1:port, falling back to a free port when port is 0
// or taken.
func listen(port int) (net.Listener, error) {
	if port > 0 {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			return ln, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return ln, nil
}

func loadPorts(path string) map[string]int {
	ports := map[string]int{}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &ports)
	}
	return ports
}

func (c *Cluster) savePorts(path string) {
	ports := map[string]int{"api": portOf(c.APIHost)}
	if c.InternalAPIHost != c.APIHost {
		ports["api_internal"] = portOf(c.InternalAPIHost)
	}
	for i, u := range c.KeepstoreURLs {
		ports["keep"+strconv.Itoa(i)] = portOf(u)
	}
	if c.ProxyURL != "" {
		ports["proxy"] = portOf(c.ProxyURL)
	}
	b, _ := json.Marshal(ports)
	writeFileAtomic(path, b, 0o600)
}

func portOf(s string) int {
	if u, err := url.Parse(s); err == nil && u.Port() != "" {
		p, _ := strconv.Atoi(u.Port())
		return p
	}
	_, p, _ := net.SplitHostPort(s)
	n, _ := strconv.Atoi(p)
	return n
}

// loadOrCreateCert returns the self-signed pair in dir, creating it (valid
// for 127.0.0.1, ::1 and localhost) on first use.
func loadOrCreateCert(dir string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "arv-server dev"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              []string{"localhost"},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// writeFileAtomic writes data to path via a temp file, fsync and rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
