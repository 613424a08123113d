package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
)

// Options configure a Server. The zero value of each field means its default.
type Options struct {
	DataDir            string // bbolt file and bootstrap secrets
	ClusterID          string // 5 characters; default "zzzzz"
	ExternalURL        string // "https://host:port" for the discovery document
	BlobSigningTTL     time.Duration
	DefaultReplication int   // default 2
	MaxRequestSize     int64 // default 128 MiB
	KeepServices       []arvados.KeepService
	ProxyServices      []arvados.KeepService
	Logger             *slog.Logger

	// Collection settings a real cluster has (PROTOCOL 15.3), so that
	// clients can be tested against them; see collection_settings.go.
	//
	// DisableBlobSigning: locators carry no +A and none is checked
	// (Collections.BlobSigning: false).
	DisableBlobSigning bool
	// DisableCollectionVersioning turns off past versions
	// (Collections.CollectionVersioning: false).
	DisableCollectionVersioning bool
	// PreserveVersionIfIdle: an update more than this after the previous
	// one keeps the previous state as a past version. 0 = 10 s, as
	// upstream; negative = only when preserve_version is set.
	PreserveVersionIfIdle time.Duration
	// ManagedProperties are set by the server on every collection created
	// (Collections.ManagedProperties).
	ManagedProperties map[string]ManagedProperty
	// Vocabulary, when set, is strict: a property key of a collection,
	// group or link that it does not list is refused (400).
	Vocabulary []string
	// AuditUsers are the UUIDs of users, besides the system user, that may
	// create reserved log events such as block_put (the proxy's service
	// user when it does not hold the system root token).
	AuditUsers []string
	// ManagementToken guards /_health/ping and /metrics ("" = health
	// disabled, metrics open), as in keepstore and the proxy.
	ManagementToken string
	// MaxConcurrentRequests bounds the API requests in progress; more get
	// 503 and Retry-After at once. 0 = defaultMaxConcurrentRequests.
	MaxConcurrentRequests int
	// BodyIdleTimeout is the longest pause while a request body arrives;
	// BodyTimeout bounds the whole body. A request that exceeds either gets
	// 408 and its connection is closed. 0 = the defaults below.
	BodyIdleTimeout time.Duration
	BodyTimeout     time.Duration
	// WriteTimeout bounds writing the response, so that a client that does
	// not read cannot hold a request slot: the response must be written
	// within BodyTimeout + WriteTimeout of the request's start, else the
	// connection is closed. 0 = defaultWriteTimeout.
	WriteTimeout time.Duration
}

// Server is the API server subset. It is an http.Handler.
type Server struct {
	opts  Options
	store Store
	log   *slog.Logger
	key   []byte
	root  string // system root token, v2
	admin string // admin token, v2

	slots   chan struct{} // one per API request in progress (MaxConcurrentRequests)
	metrics *metrics

	mu sync.Mutex // serializes writes that check-then-act (names, tokens)

	perms permIndex // users, groups and permission links (permissions.go)
	names nameIndex // collection names by owner (collection_names.go); under mu

	routes []route // the route table (routes.go)
	mux    *http.ServeMux
}

// Open opens (creating on first use) the store in opts.DataDir and the
// bootstrap secrets: blob signing key, system root token, admin user and
// token, each in a 0600 file in the data directory.
func Open(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("apiserver: no data directory")
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "zzzzz"
	}
	if opts.BlobSigningTTL == 0 {
		opts.BlobSigningTTL = arvados.DefaultBlobSigningTTL
	}
	if opts.DefaultReplication == 0 {
		opts.DefaultReplication = 2
	}
	if opts.MaxRequestSize == 0 {
		opts.MaxRequestSize = 128 << 20
	}
	if opts.PreserveVersionIfIdle == 0 {
		opts.PreserveVersionIfIdle = defaultPreserveVersionIfIdle
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := opts.applyLimits(); err != nil {
		return nil, err
	}
	if err := opts.checkAuditUsers(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	st, err := openBoltStore(filepath.Join(opts.DataDir, "api.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, store: st, log: opts.Logger,
		slots: make(chan struct{}, opts.MaxConcurrentRequests), metrics: newMetrics(st, opts.MaxConcurrentRequests)}
	s.buildRouter()
	if err := s.bootstrap(); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.loadPermissions(); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.loadCollectionNames(); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.SetKeepServices(opts.KeepServices, opts.ProxyServices); err != nil {
		st.Close()
		return nil, fmt.Errorf("store the configured keep services: %w", err)
	}
	return s, nil
}

// Close closes the store.
func (s *Server) Close() error { return s.store.Close() }

// SigningKey returns the cluster's blob signing key.
func (s *Server) SigningKey() []byte { return s.key }

// SystemRootToken returns the system root token (v2 form).
func (s *Server) SystemRootToken() string { return s.root }

// AdminToken returns the bootstrap admin user's token (v2 form).
func (s *Server) AdminToken() string { return s.admin }

// SetKeepServices replaces the configured keep services (see
// keep_services.go); those an admin created through the API stay.
func (s *Server) SetKeepServices(disk, proxy []arvados.KeepService) error {
	for i := range proxy {
		proxy[i].ServiceType = "proxy"
	}
	return s.setConfiguredKeepServices(append(append([]arvados.KeepService{}, disk...), proxy...))
}

func (s *Server) uuid(infix string) string {
	return s.opts.ClusterID + "-" + infix + "-" + randomBase36(15)
}

func randomBase36(n int) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		v, _ := rand.Int(rand.Reader, big.NewInt(36))
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}

func (s *Server) systemUserUUID() string { return s.opts.ClusterID + "-tpzed-000000000000000" }

func (s *Server) bootstrap() error {
	dir := s.opts.DataDir
	key, err := readOrCreateSecret(filepath.Join(dir, "blob-signing-key"), func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b)
	})
	if err != nil {
		return err
	}
	s.key = []byte(key)
	now := time.Now().UTC()
	sys := s.systemUserUUID()
	var u user
	if err := s.store.Get("users", sys, &u); errors.Is(err, ErrNotFound) {
		u = user{User: arvados.User{Common: common(sys, sys, now), FullName: "root", IsActive: true, IsAdmin: true}}
		if err := s.store.Put("users", sys, u); err != nil {
			return err
		}
	}
	rootUUID := s.opts.ClusterID + "-gj3su-000000000000000"
	secret, err := readOrCreateSecret(filepath.Join(dir, "system-root-token"), func() string {
		return "v2/" + rootUUID + "/" + randomBase36(50)
	})
	if err != nil {
		return err
	}
	s.root = secret
	if err := s.ensureToken(rootUUID, sys, secret, []string{"all"}); err != nil {
		return err
	}
	adminTok, err := readOrCreateSecret(filepath.Join(dir, "admin-token"), func() string {
		return "v2/" + s.uuid("gj3su") + "/" + randomBase36(50)
	})
	if err != nil {
		return err
	}
	s.admin = adminTok
	adminUUID := s.opts.ClusterID + "-tpzed-000000000000001"
	if err := s.store.Get("users", adminUUID, &u); errors.Is(err, ErrNotFound) {
		u = user{User: arvados.User{Common: common(adminUUID, sys, now), FullName: "Admin", Username: "admin", Email: "admin@localhost", IsActive: true, IsAdmin: true}}
		if err := s.store.Put("users", adminUUID, u); err != nil {
			return err
		}
	}
	parts := strings.Split(adminTok, "/")
	if err := s.ensureToken(parts[1], adminUUID, adminTok, []string{"all"}); err != nil {
		return err
	}
	s.log.Info("bootstrap secrets", "blob_signing_key", filepath.Join(dir, "blob-signing-key"),
		"system_root_token", filepath.Join(dir, "system-root-token"), "admin_token", filepath.Join(dir, "admin-token"))
	return nil
}

func (s *Server) ensureToken(uuid, owner, v2 string, scopes []string) error {
	var t token
	if err := s.store.Get("api_client_authorizations", uuid, &t); err == nil {
		return nil
	}
	now := time.Now().UTC()
	t = token{APIClientAuthorization: arvados.APIClientAuthorization{Common: common(uuid, owner, now), APIToken: v2[strings.LastIndexByte(v2, '/')+1:], Scopes: scopes}}
	t.Kind = "arvados#apiClientAuthorization"
	return s.store.Put("api_client_authorizations", uuid, t)
}

func readOrCreateSecret(path string, gen func() string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	}
	v := gen()
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

// CreateUser creates an active user owned by the system user, with an
// unscoped token (for dev clusters and tests).
func (s *Server) CreateUser(ctx context.Context, u arvados.User) (arvados.User, string, error) {
	now := time.Now().UTC()
	u.Common = common(s.uuid("tpzed"), s.systemUserUUID(), now)
	u.Kind = "arvados#user"
	if err := s.store.Put("users", u.UUID, user{User: u}); err != nil {
		return u, "", err
	}
	s.perms.putUser(u)
	t, err := s.newToken(u.UUID, []string{"all"}, nil)
	if err != nil {
		return u, "", err
	}
	return u, t.TokenV2(), nil
}

func (s *Server) newToken(owner string, scopes []string, expires *time.Time) (token, error) {
	now := time.Now().UTC()
	t := token{APIClientAuthorization: arvados.APIClientAuthorization{
		Common: common(s.uuid("gj3su"), owner, now), APIToken: randomBase36(50), Scopes: scopes, ExpiresAt: expires,
	}}
	t.Kind = "arvados#apiClientAuthorization"
	return t, s.store.Put("api_client_authorizations", t.UUID, t)
}

func common(uuid, owner string, now time.Time) arvados.Common {
	return arvados.Common{UUID: uuid, OwnerUUID: owner, CreatedAt: &now, ModifiedAt: &now, ModifiedByUserUUID: owner, Etag: randomBase36(10)}
}

// user is a stored user; Uploader marks uploader accounts.
type user struct {
	arvados.User
	Uploader    bool       `json:"uploader,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	ProjectUUID string     `json:"project_uuid,omitempty"` // uploaders: the project it was given can_write on at creation
}

type token struct {
	arvados.APIClientAuthorization
	Revoked bool `json:"revoked,omitempty"`
}

// session is an authenticated request.
type session struct {
	token    string // exactly as presented
	tok      token
	user     user
	reqID    string
	scopesOK bool
}

// apiError is an error with an HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status, fmt.Sprintf(format, args...)}
}

// writeError answers err in upstream's error format. An apiError carries
// its status; any other error is the store failing (the handlers check
// requests with apiErrors), which upstream answers 500 like a database
// failure, so clients retry it instead of treating the request as wrong.
func writeError(w http.ResponseWriter, reqID string, err error) int {
	status := http.StatusInternalServerError
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.status
	} else if errors.Is(err, ErrNotFound) {
		status = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"errors":      []string{fmt.Sprintf("%s (%s)", err.Error(), reqID)},
		"error_token": fmt.Sprintf("%d+%s", time.Now().Unix(), randomHex(4)),
	})
	return status
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// authenticate finds the token of r (Authorization header, then api_token
// parameter) and its user. It checks expiry, revocation and that the user
// is active.
func (s *Server) authenticate(r *http.Request, params map[string]any) (*session, error) {
	tok, _ := httpx.BearerToken(r)
	if tok == "" {
		if v, ok := params["api_token"].(string); ok {
			tok = v
		}
	}
	if tok == "" {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: no token provided")
	}
	var t token
	found := false
	if strings.HasPrefix(tok, "v2/") {
		parts := strings.Split(tok, "/")
		if len(parts) >= 3 && len(parts[1]) == 27 && parts[2] != "" {
			if s.store.Get("api_client_authorizations", parts[1], &t) == nil &&
				subtle.ConstantTimeCompare([]byte(t.APIToken), []byte(parts[2])) == 1 {
				found = true
			}
		}
	} else {
		err := s.store.Each("api_client_authorizations", func(_ string, raw []byte) bool {
			var c token
			if json.Unmarshal(raw, &c) == nil && subtle.ConstantTimeCompare([]byte(c.APIToken), []byte(tok)) == 1 {
				t, found = c, true
				return false
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("find token: %w", err)
		}
	}
	if !found || t.Revoked {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: invalid or revoked token")
	}
	if t.ExpiresAt != nil && !t.ExpiresAt.After(time.Now()) {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: token expired at %s", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	var u user
	if err := s.store.Get("users", t.OwnerUUID, &u); err != nil {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: token owner does not exist")
	}
	if u.ExpiresAt != nil && !u.ExpiresAt.After(time.Now()) {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: uploader account %s expired at %s", u.UUID, u.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &session{token: tok, tok: t, user: u}, nil
}

// scopeAllows implements PROTOCOL 10.2: "all", an exact "METHOD /path", or
// a prefix scope ending in "/". HEAD is allowed by GET scopes; PUT is
// matched as PATCH; a trailing slash is stripped from the request path.
func scopeAllows(scopes []string, method, path string) bool {
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if method == http.MethodPut {
		method = http.MethodPatch
	}
	methods := []string{method}
	if method == http.MethodHead {
		methods = append(methods, http.MethodGet)
	}
	for _, sc := range scopes {
		if sc == "all" {
			return true
		}
		for _, m := range methods {
			req := m + " " + path
			if sc == req || (strings.HasSuffix(sc, "/") && strings.HasPrefix(req, sc)) {
				return true
			}
		}
	}
	return false
}
