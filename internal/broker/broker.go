package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
	"github.com/arv-upload/arv-upload/keepclient"
)

// UsernamePrefix begins the username of every account the broker makes.
// Upstream usernames are letters and digits, starting with a letter.
const UsernamePrefix = "arvuploader"

// PropertyKey is the key, in the properties of the owner's can_manage link,
// of the account's record: {"name", "project_uuid", "expires_at"}.
const PropertyKey = "arv_upload_account"

// AdminScopes are exactly the calls the broker makes with its admin token.
var AdminScopes = []string{
	"POST /arvados/v1/users",
	"POST /arvados/v1/links",
	"POST /arvados/v1/api_client_authorizations",
	"POST /arvados/v1/users/", // users/{uuid}/unsetup
}

// Options configure a Server.
type Options struct {
	// Admin is a client for the upstream API server holding the admin
	// token; callers' requests use it WithToken(their own token).
	Admin *keepclient.Client
	// Logger gets one line per request; nil discards.
	Logger *slog.Logger
	// Now is the clock for expiry checks; nil is time.Now.
	Now func() time.Time
}

// Server is the broker's HTTP handler.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

// New returns a broker for opts.
func New(opts Options) (*Server, error) {
	if opts.Admin == nil {
		return nil, errors.New("broker: Options.Admin is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	const base = "/arvados/v1/uploader_accounts"
	s.mux.HandleFunc("POST "+base, s.handle(s.create))
	s.mux.HandleFunc("GET "+base, s.handle(s.list))
	s.mux.HandleFunc("GET "+base+"/{uuid}", s.handle(s.get))
	s.mux.HandleFunc("POST "+base+"/{uuid}/deactivate", s.handle(s.deactivate))
	return s, nil
}

// Error is a refusal with the HTTP status the caller gets.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(status int, format string, a ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, a...)}
}

// caller is an authenticated request.
type caller struct {
	user   arvados.User
	client *keepclient.Client // upstream, with the caller's token
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) handle(h func(ctx context.Context, c *caller, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := httpx.RequestID(w, r)
		ctx := keepclient.ContextWithRequestID(r.Context(), reqID)
		var userUUID string
		out, err := func() (any, error) {
			c, err := s.authenticate(ctx, r)
			if err != nil {
				return nil, err
			}
			userUUID = c.user.UUID
			return h(ctx, c, r)
		}()
		status := http.StatusOK
		if err != nil {
			status, out = s.errorBody(err, reqID)
		}
		body, merr := json.Marshal(out)
		if merr != nil {
			status, body = http.StatusInternalServerError, []byte(`{"errors":["encode the response"]}`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		n, _ := w.Write(append(body, '\n'))
		var extra []slog.Attr
		if userUUID != "" {
			extra = append(extra, slog.String("user_uuid", userUUID))
		}
		if err != nil {
			extra = append(extra, slog.String("err", err.Error()))
		}
		httpx.LogRequest(ctx, s.opts.Logger, r, httpx.Access{ID: reqID, Status: status, BytesIn: r.ContentLength, BytesOut: int64(n), Duration: time.Since(start)}, extra...)
	}
}

// errorBody maps err to a status and an Arvados error body. Upstream
// refusals keep their status (401, 403, 404, 422); anything else upstream
// is a 502, since the caller's request was fine.
func (s *Server) errorBody(err error, reqID string) (int, any) {
	status := http.StatusBadGateway
	var be *Error
	var ae *keepclient.APIError
	switch {
	case errors.As(err, &be):
		status = be.Status
	case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
		status = ae.Status
	}
	return status, map[string]any{"errors": []string{fmt.Sprintf("%s (%s)", err.Error(), reqID)}}
}

// authenticate checks the caller's token with the upstream, as the caller.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*caller, error) {
	tok, ok := httpx.BearerToken(r)
	if !ok {
		return nil, errorf(http.StatusUnauthorized, "Not logged in: send your own API token as Authorization: Bearer")
	}
	c := &caller{client: s.opts.Admin.WithToken(tok)}
	u, err := c.client.CurrentUser(ctx)
	if err != nil {
		if keepclient.IsStatus(err, http.StatusUnauthorized) {
			return nil, errorf(http.StatusUnauthorized, "Not logged in: the API server does not accept your token")
		}
		if keepclient.IsStatus(err, http.StatusForbidden) {
			return nil, errorf(http.StatusForbidden, "Forbidden: your token may not call users/current; use an unscoped token of your own")
		}
		return nil, fmt.Errorf("check the caller's token with the API server: %w", err)
	}
	c.user = *u
	if !u.IsActive {
		return nil, errorf(http.StatusForbidden, "Forbidden: user %s is not active; ask an administrator to activate you", u.UUID)
	}
	if isAccount(u) {
		return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not manage uploader accounts; use your own token")
	}
	// A scoped token (an uploader's, an upload slot's) must not act for
	// its user here: it could make tokens far broader than itself.
	t, err := c.client.CurrentToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the caller's token record from the API server: %w", err)
	}
	if !contains(t.Scopes, "all") {
		return nil, errorf(http.StatusForbidden, "Forbidden: a scoped token may not manage uploader accounts; use your own unscoped token")
	}
	return c, nil
}

// isAccount reports whether u is an uploader account: the broker's (its
// username, which only admins set) or arv-server's own (prefs.uploader).
func isAccount(u *arvados.User) bool {
	up, _ := u.Prefs["uploader"].(bool)
	return strings.HasPrefix(u.Username, UsernamePrefix) || up
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type createRequest struct {
	Name        string `json:"name"`
	ExpiresAt   string `json:"expires_at"`
	ProjectUUID string `json:"project_uuid"`
}

// decodeCreate reads {"uploader_account": {...}} from a JSON body, or the
// uploader_account form or query parameter (a JSON object string).
func decodeCreate(r *http.Request) (createRequest, error) {
	var req createRequest
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") || r.URL.Query().Has("uploader_account") {
		if err := r.ParseForm(); err != nil {
			return req, errorf(http.StatusUnprocessableEntity, "read the form: %v", err)
		}
		if err := json.Unmarshal([]byte(r.Form.Get("uploader_account")), &req); err != nil {
			return req, errorf(http.StatusUnprocessableEntity, "uploader_account must be a JSON object: %v", err)
		}
		return req, nil
	}
	var body struct {
		Account *createRequest `json:"uploader_account"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Account == nil {
		return req, errorf(http.StatusUnprocessableEntity, `the body must be {"uploader_account": {"name": ..., "expires_at": ..., "project_uuid": ...}}`)
	}
	return *body.Account, nil
}

func (s *Server) create(ctx context.Context, c *caller, r *http.Request) (any, error) {
	req, err := decodeCreate(r)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, errorf(http.StatusUnprocessableEntity, "uploader_account needs a name")
	}
	var exp *time.Time
	if req.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, req.ExpiresAt)
		if err != nil {
			return nil, errorf(http.StatusUnprocessableEntity, "expires_at %q is not an RFC 3339 time", req.ExpiresAt)
		}
		if !t.After(s.opts.Now()) {
			return nil, errorf(http.StatusUnprocessableEntity, "expires_at %q is in the past", req.ExpiresAt)
		}
		t = t.UTC()
		exp = &t
	}
	if req.ProjectUUID != "" {
		if err := checkProject(ctx, c, req.ProjectUUID); err != nil {
			return nil, err
		}
	}
	username, err := newUsername()
	if err != nil {
		return nil, err
	}
	adm := s.opts.Admin
	var u arvados.User
	err = adm.Call(ctx, http.MethodPost, "arvados/v1/users", nil, map[string]any{"user": map[string]any{
		"username": username, "first_name": req.Name, "last_name": "(uploader account)", "is_active": true}}, &u)
	if err != nil {
		return nil, fmt.Errorf("create the account's user (check the broker's admin token and its scopes): %w", err)
	}
	// From here on a failure unsets the half-made account up, so that no
	// active user without an owner is left behind.
	acct, err := s.provision(ctx, c, u, req, exp)
	if err != nil {
		if uerr := adm.Call(context.WithoutCancel(ctx), http.MethodPost, "arvados/v1/users/"+url.PathEscape(u.UUID)+"/unsetup", nil, nil, nil); uerr != nil {
			return nil, fmt.Errorf("%w (and unsetup of the half-made account %s failed too: %v; an administrator should unsetup it)", err, u.UUID, uerr)
		}
		return nil, err
	}
	return acct, nil
}

func (s *Server) provision(ctx context.Context, c *caller, u arvados.User, req createRequest, exp *time.Time) (*arvados.UploaderAccount, error) {
	adm := s.opts.Admin
	record := map[string]any{"name": req.Name, "project_uuid": req.ProjectUUID, "expires_at": nil}
	if exp != nil {
		record["expires_at"] = exp.Format(time.RFC3339Nano)
	}
	link := func(tail, name, head string, props map[string]any) error {
		return adm.Call(ctx, http.MethodPost, "arvados/v1/links", nil, map[string]any{"link": map[string]any{
			"link_class": "permission", "name": name, "tail_uuid": tail, "head_uuid": head, "properties": props}}, nil)
	}
	if err := link(c.user.UUID, "can_manage", u.UUID, map[string]any{PropertyKey: record}); err != nil {
		return nil, fmt.Errorf("give %s can_manage on the account %s: %w", c.user.UUID, u.UUID, err)
	}
	if req.ProjectUUID != "" {
		if err := link(u.UUID, "can_write", req.ProjectUUID, map[string]any{}); err != nil {
			return nil, fmt.Errorf("give the account %s can_write on project %s: %w", u.UUID, req.ProjectUUID, err)
		}
	}
	attrs := map[string]any{"owner_uuid": u.UUID, "scopes": arvados.UploaderScopes}
	if exp != nil {
		attrs["expires_at"] = exp.Format(time.RFC3339Nano)
	}
	var t arvados.APIClientAuthorization
	if err := adm.Call(ctx, http.MethodPost, "arvados/v1/api_client_authorizations", nil,
		map[string]any{"api_client_authorization": attrs}, &t); err != nil {
		return nil, fmt.Errorf("create the account's token: %w", err)
	}
	created := u.CreatedAt
	return &arvados.UploaderAccount{UUID: u.UUID, OwnerUUID: c.user.UUID, Name: req.Name, IsActive: true, ExpiresAt: exp,
		CreatedAt: created, ProjectUUID: req.ProjectUUID, APIToken: t.TokenV2()}, nil
}

// checkProject refuses a drop-box project the caller cannot manage (giving
// the account can_write there is sharing it), asking as the caller.
func checkProject(ctx context.Context, c *caller, uuid string) error {
	var g arvados.Group
	err := c.client.Call(ctx, http.MethodGet, "arvados/v1/groups/"+url.PathEscape(uuid), nil, nil, &g)
	if keepclient.IsStatus(err, http.StatusNotFound) {
		return errorf(http.StatusUnprocessableEntity, "project_uuid '%s' not found (or you cannot read it)", uuid)
	}
	if err != nil {
		return fmt.Errorf("read project %s as the caller: %w", uuid, err)
	}
	if g.GroupClass != "project" {
		return errorf(http.StatusUnprocessableEntity, "project_uuid %s is a %s group, not a project", uuid, g.GroupClass)
	}
	if !g.CanManage {
		return errorf(http.StatusForbidden, "Forbidden: giving an uploader account can_write on project %s needs can_manage there; ask its owner", uuid)
	}
	return nil
}

func newUsername() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 15)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a username: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return UsernamePrefix + string(b), nil
}

// owned returns the caller's accounts (or the one named by only): the
// caller's can_manage links to users that carry PropertyKey, joined with
// those users (read as the caller, who manages them) that have the
// broker's username.
func (s *Server) owned(ctx context.Context, c *caller, only string) ([]arvados.UploaderAccount, error) {
	filters := [][]any{{"tail_uuid", "=", c.user.UUID}, {"link_class", "=", "permission"}, {"name", "=", "can_manage"},
		{"head_uuid", "is_a", "arvados#user"}}
	if only != "" {
		filters = append(filters, []any{"head_uuid", "=", only})
	}
	records := map[string]arvados.Link{}
	var heads []string
	for offset := 0; ; {
		page, err := c.client.ListLinks(ctx, keepclient.ListOptions{Filters: filters, Limit: 1000, Offset: offset, Order: []string{"created_at asc", "uuid asc"}})
		if err != nil {
			return nil, fmt.Errorf("list your can_manage links: %w", err)
		}
		for _, l := range page.Items {
			if _, ok := l.Properties[PropertyKey].(map[string]any); ok {
				if _, seen := records[l.HeadUUID]; !seen {
					heads = append(heads, l.HeadUUID)
				}
				records[l.HeadUUID] = l
			}
		}
		offset += len(page.Items)
		if len(page.Items) == 0 || offset >= page.ItemsAvailable {
			break
		}
	}
	var out []arvados.UploaderAccount
	for len(heads) > 0 {
		n := min(len(heads), 100)
		batch := heads[:n]
		heads = heads[n:]
		var page arvados.List[arvados.User]
		f, _ := json.Marshal([][]any{{"uuid", "in", batch}})
		if err := c.client.Call(ctx, http.MethodGet, "arvados/v1/users", url.Values{"filters": {string(f)}, "limit": {"1000"}}, nil, &page); err != nil {
			return nil, fmt.Errorf("read your uploader accounts: %w", err)
		}
		byUUID := map[string]arvados.User{}
		for _, u := range page.Items {
			byUUID[u.UUID] = u
		}
		for _, id := range batch {
			u, ok := byUUID[id]
			if !ok || !strings.HasPrefix(u.Username, UsernamePrefix) || !u.CanManage {
				continue
			}
			out = append(out, accountOf(u, records[id], c.user.UUID))
		}
	}
	return out, nil
}

func accountOf(u arvados.User, l arvados.Link, owner string) arvados.UploaderAccount {
	rec, _ := l.Properties[PropertyKey].(map[string]any)
	a := arvados.UploaderAccount{UUID: u.UUID, OwnerUUID: owner, IsActive: u.IsActive, CreatedAt: u.CreatedAt}
	a.Name, _ = rec["name"].(string)
	a.ProjectUUID, _ = rec["project_uuid"].(string)
	if e, ok := rec["expires_at"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, e); err == nil {
			a.ExpiresAt = &t
		}
	}
	return a
}

func (s *Server) list(ctx context.Context, c *caller, r *http.Request) (any, error) {
	items, err := s.owned(ctx, c, "")
	if err != nil {
		return nil, err
	}
	if items == nil {
		items = []arvados.UploaderAccount{}
	}
	return map[string]any{"kind": "arvados#uploaderAccountList", "etag": "", "self_link": "", "offset": 0,
		"limit": len(items), "items": items, "items_available": len(items)}, nil
}

func (s *Server) one(ctx context.Context, c *caller, id string) (arvados.UploaderAccount, error) {
	items, err := s.owned(ctx, c, id)
	if err != nil {
		return arvados.UploaderAccount{}, err
	}
	if len(items) != 1 {
		return arvados.UploaderAccount{}, errorf(http.StatusNotFound, "uploader account %s not found among yours", id)
	}
	return items[0], nil
}

func (s *Server) get(ctx context.Context, c *caller, r *http.Request) (any, error) {
	return s.one(ctx, c, r.PathValue("uuid"))
}

func (s *Server) deactivate(ctx context.Context, c *caller, r *http.Request) (any, error) {
	a, err := s.one(ctx, c, r.PathValue("uuid"))
	if err != nil {
		return nil, err
	}
	if err := s.opts.Admin.Call(ctx, http.MethodPost, "arvados/v1/users/"+url.PathEscape(a.UUID)+"/unsetup", nil, nil, nil); err != nil {
		return nil, fmt.Errorf("unsetup the account %s (check the broker's admin token and its scopes): %w", a.UUID, err)
	}
	a.IsActive = false
	return a, nil
}
