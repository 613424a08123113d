package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/admin"
	"github.com/arv-upload/arv-upload/keepclient"
)

var reqIDRe = regexp.MustCompile(`^req-[0-9a-z]{20}$`)
var uuidRe = regexp.MustCompile(`^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$`)

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// ServeHTTP routes one API request.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := r.Header.Get("X-Request-Id")
	if !reqIDRe.MatchString(reqID) {
		reqID = keepclient.NewRequestID()
	}
	rw.Header().Set("X-Request-Id", reqID)
	w := &statusWriter{ResponseWriter: rw, status: 200}
	user := ""
	err := func() error {
		if r.ContentLength > s.opts.MaxRequestSize {
			return errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes is over the %d-byte limit", r.ContentLength, s.opts.MaxRequestSize)
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestSize)
		p := r.URL.Path
		if p != path.Clean(p) && p+"/" != path.Clean(p)+"/" || strings.Contains(p, "..") {
			return errorf(http.StatusBadRequest, "invalid path %q", p)
		}
		switch {
		case p == "/discovery/v1/apis/arvados/v1/rest":
			writeJSON(w, s.discovery())
			return nil
		case p == "/arvados/v1/config":
			writeJSON(w, s.clusterConfig())
			return nil
		case p == "/_health/ping":
			writeJSON(w, map[string]string{"health": "OK"})
			return nil
		}
		if !strings.HasPrefix(p, "/arvados/v1/") {
			return errorf(http.StatusNotFound, "no such route %s", p)
		}
		params, err := readParams(r)
		if err != nil {
			return err
		}
		method := r.Method
		if m, ok := params["_method"].(string); ok && method == http.MethodPost {
			method = strings.ToUpper(m)
		} else if m := r.Header.Get("X-Http-Method-Override"); m != "" && method == http.MethodPost {
			method = strings.ToUpper(m)
		}
		if method == http.MethodPut {
			method = http.MethodPatch
		}
		parts := strings.Split(strings.Trim(strings.TrimPrefix(p, "/arvados/v1/"), "/"), "/")
		if parts[0] == "keep_services" && len(parts) == 2 && parts[1] == "accessible" {
			writeJSON(w, s.accessible(r))
			return nil
		}
		sess, err := s.authenticate(r, params)
		if err != nil {
			return err
		}
		user = sess.user.UUID
		sess.reqID = reqID
		always := method == http.MethodGet && p == "/arvados/v1/api_client_authorizations/current"
		if !always && !scopeAllows(sess.tok.Scopes, method, p) {
			return errorf(http.StatusForbidden, "Forbidden: request %s %s is not allowed by the token's scopes", method, p)
		}
		out, err := s.route(sess, method, parts, params)
		if err != nil {
			return err
		}
		writeJSON(w, out)
		return nil
	}()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = errorf(http.StatusRequestEntityTooLarge, "request body is over the %d-byte limit", s.opts.MaxRequestSize)
		}
		writeError(w, reqID, err)
	}
	s.log.Info("request", "request_id", reqID, "method", r.Method, "path", r.URL.Path, "user", user,
		"status", w.status, "duration", time.Since(start).Seconds())
}

// readParams merges query, form body and JSON body parameters (PROTOCOL
// 9.1). A JSON body without a resource wrapper is returned under "_body".
func readParams(r *http.Request) (map[string]any, error) {
	params := map[string]any{}
	addValues := func(v url.Values) error {
		for k, vs := range v {
			if len(vs) == 0 {
				continue
			}
			val := vs[len(vs)-1]
			if val != "" && (val[0] == '[' || val[0] == '{' || val[0] == '"') {
				var j any
				if err := json.Unmarshal([]byte(val), &j); err != nil {
					return errorf(http.StatusBadRequest, "parameter %s: malformed JSON: %v", k, err)
				}
				params[k] = j
			} else {
				params[k] = val
			}
		}
		return nil
	}
	if err := addValues(r.URL.Query()); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case len(body) == 0:
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed form body: %v", err)
		}
		if err := addValues(v); err != nil {
			return nil, err
		}
	default:
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
		}
		for k, v := range obj {
			params[k] = v
		}
		params["_body"] = obj
	}
	return params, nil
}

// attrs returns the object attributes under key (an object or a JSON
// string), else the unwrapped JSON body, checked against allowed.
func attrs(params map[string]any, key string, allowed ...string) (map[string]any, error) {
	var a map[string]any
	switch v := params[key].(type) {
	case map[string]any:
		a = v
	case nil:
		if b, ok := params["_body"].(map[string]any); ok {
			a = map[string]any{}
			for k, v := range b {
				if !isRequestParam(k) {
					a[k] = v
				}
			}
		}
	default:
		return nil, errorf(http.StatusUnprocessableEntity, "%s must be a JSON object", key)
	}
	if a == nil {
		a = map[string]any{}
	}
	var unknown []string
	for k := range a {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, errorf(http.StatusUnprocessableEntity, "unknown or read-only %s attributes: %s", key, strings.Join(unknown, ", "))
	}
	return a, nil
}

func isRequestParam(k string) bool {
	switch k {
	case "ensure_unique_name", "select", "cluster_id", "api_token", "_method", "filters", "order", "limit", "offset", "count", "replace_files", "replace_segments", "include_trash":
		return true
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func boolParam(params map[string]any, k string) bool {
	switch v := params[k].(type) {
	case bool:
		return v
	case string:
		return v != "" && v != "false" && v != "0"
	}
	return false
}

func (s *Server) route(sess *session, method string, parts []string, params map[string]any) (any, error) {
	res, id, action := parts[0], "", ""
	if len(parts) > 1 {
		id = parts[1]
	}
	if len(parts) > 2 {
		action = parts[2]
	}
	if len(parts) > 3 {
		return nil, errorf(http.StatusNotFound, "no such route")
	}
	switch {
	case res == "users" && id == "current" && method == http.MethodGet:
		// An uploader account's expires_at too (upstream users have none),
		// so a Keep proxy caching this answer stops at that very moment.
		return struct {
			keepclient.User
			ExpiresAt *time.Time `json:"expires_at,omitempty"`
		}{s.userOut(sess, sess.user), sess.user.ExpiresAt}, nil
	case res == "users":
		return s.users(sess, method, id, params)
	case res == "api_client_authorizations":
		return s.tokens(sess, method, id, params)
	case res == "collections":
		return s.collections(sess, method, id, params)
	case res == "links":
		return s.links(sess, method, id, params)
	case res == "logs":
		return s.logs(sess, method, id, params)
	case res == "keep_services" && method == http.MethodGet:
		if !sess.user.IsAdmin {
			return nil, errorf(http.StatusForbidden, "Forbidden: only admins may list keep services")
		}
		s.svcMu.RLock()
		defer s.svcMu.RUnlock()
		items := append(append([]keepclient.KeepService{}, s.disks...), s.proxies...)
		return list("arvados#keepServiceList", items), nil
	case res == "uploader_accounts":
		return s.uploaderAccounts(sess, method, id, action, params)
	}
	return nil, errorf(http.StatusNotFound, "no such route %s %s", method, strings.Join(parts, "/"))
}

func list[T any](kind string, items []T) keepclient.List[T] {
	if items == nil {
		items = []T{}
	}
	return keepclient.List[T]{Kind: kind, Items: items, Limit: 1000, ItemsAvailable: len(items)}
}

func (s *Server) discovery() map[string]any {
	root := s.opts.ExternalURL
	return map[string]any{
		"kind": "discovery#restDescription", "id": "arvados:v1", "name": "arvados", "version": "v1",
		"uuidPrefix": s.opts.ClusterID, "blobSignatureTtl": int64(s.opts.BlobSigningTTL / time.Second),
		"defaultCollectionReplication": s.opts.DefaultReplication, "defaultTrashLifetime": 1209600,
		"maxRequestSize": s.opts.MaxRequestSize, "maxItemsPerResponse": 1000, "revision": "20250402",
		"rootUrl": root + "/", "baseUrl": root + "/arvados/v1/", "basePath": "/arvados/v1/", "servicePath": "arvados/v1/",
		"schemas": map[string]any{
			"Collection": map[string]any{"uuidPrefix": "4zz18"}, "User": map[string]any{"uuidPrefix": "tpzed"},
			"Link": map[string]any{"uuidPrefix": "o0j2j"}, "Log": map[string]any{"uuidPrefix": "57u5n"},
			"ApiClientAuthorization": map[string]any{"uuidPrefix": "gj3su"}, "KeepService": map[string]any{"uuidPrefix": "bi6l4"},
		},
		"resources": map[string]any{},
	}
}

func (s *Server) clusterConfig() map[string]any {
	return map[string]any{
		"ClusterID": s.opts.ClusterID,
		"Collections": map[string]any{
			"DefaultReplication": s.opts.DefaultReplication,
			"BlobSigningTTL":     s.opts.BlobSigningTTL.String(),
			"BlobSigning":        true,
		},
		"StorageClasses": map[string]any{"default": map[string]any{"Default": true, "Priority": 0}},
	}
}

// accessible implements keep_services/accessible. Deviation from upstream
// (docs/API.md): when proxies are configured, every client that does not
// send X-Internal-Client: 1 gets the proxies, because our keepstores are
// internal; X-External-Client: 1 always gets the proxies.
func (s *Server) accessible(r *http.Request) keepclient.List[keepclient.KeepService] {
	s.svcMu.RLock()
	defer s.svcMu.RUnlock()
	items := s.disks
	if len(s.proxies) > 0 && (r.Header.Get("X-External-Client") == "1" || r.Header.Get("X-Internal-Client") != "1") {
		items = s.proxies
	}
	return list("arvados#keepServiceList", append([]keepclient.KeepService{}, items...))
}

// ownedBy reports whether owner is user or (transitively) owned by user.
func (s *Server) ownedBy(owner, userUUID string) bool {
	for i := 0; i < 16 && owner != ""; i++ {
		if owner == userUUID {
			return true
		}
		var u user
		if s.store.Get("users", owner, &u) != nil || u.OwnerUUID == owner {
			return false
		}
		owner = u.OwnerUUID
	}
	return false
}

func (s *Server) canRead(sess *session, owner string) bool {
	return sess.user.IsAdmin || s.ownedBy(owner, sess.user.UUID)
}

func (s *Server) userOut(sess *session, u user) keepclient.User {
	out := u.User
	out.Kind = "arvados#user"
	out.CanWrite = s.canRead(sess, u.UUID)
	out.CanManage = out.CanWrite
	if out.Prefs == nil {
		out.Prefs = map[string]any{}
	}
	return out
}

func (s *Server) users(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "":
		var items []keepclient.User
		s.store.Each("users", func(_ string, raw []byte) bool {
			var u user
			if json.Unmarshal(raw, &u) == nil && (sess.user.IsAdmin || u.UUID == sess.user.UUID || s.ownedBy(u.UUID, sess.user.UUID)) {
				items = append(items, s.userOut(sess, u))
			}
			return true
		})
		return list("arvados#userList", items), nil
	case method == http.MethodGet:
		var u user
		if err := s.store.Get("users", id, &u); err != nil || !(sess.user.IsAdmin || s.ownedBy(id, sess.user.UUID)) {
			return nil, errorf(http.StatusNotFound, "user %s not found", id)
		}
		return s.userOut(sess, u), nil
	case method == http.MethodPost && id == "":
		if !sess.user.IsAdmin {
			return nil, errorf(http.StatusForbidden, "Forbidden: only admins may create users")
		}
		a, err := attrs(params, "user", "email", "username", "full_name", "first_name", "last_name", "is_active", "is_admin", "owner_uuid", "prefs", "identity_url")
		if err != nil {
			return nil, err
		}
		var nu keepclient.User
		if err := remarshal(a, &nu); err != nil {
			return nil, err
		}
		owner := nu.OwnerUUID
		if owner == "" {
			owner = s.systemUserUUID()
		}
		nu.Common = common(s.uuid("tpzed"), owner, time.Now().UTC())
		nu.Kind = "arvados#user"
		return s.userOut(sess, user{User: nu}), s.store.Put("users", nu.UUID, user{User: nu})
	case method == http.MethodPatch && id != "":
		var u user
		if err := s.store.Get("users", id, &u); err != nil || !(sess.user.IsAdmin || s.ownedBy(id, sess.user.UUID)) {
			return nil, errorf(http.StatusNotFound, "user %s not found", id)
		}
		a, err := attrs(params, "user", "email", "username", "full_name", "first_name", "last_name", "is_active", "is_admin", "prefs")
		if err != nil {
			return nil, err
		}
		if !sess.user.IsAdmin {
			// Non-admins' changes to these are silently reverted, as upstream.
			delete(a, "is_admin")
			delete(a, "username")
			delete(a, "email")
			if id == sess.user.UUID {
				delete(a, "is_active")
			}
		}
		if err := remarshal(a, &u.User); err != nil {
			return nil, err
		}
		if !u.IsActive {
			s.revokeTokens(u.UUID)
		}
		now := time.Now().UTC()
		u.ModifiedAt, u.ModifiedByUserUUID = &now, sess.user.UUID
		return s.userOut(sess, u), s.store.Put("users", id, u)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

func (s *Server) revokeTokens(userUUID string) {
	var revoke []token
	s.store.Each("api_client_authorizations", func(_ string, raw []byte) bool {
		var t token
		if json.Unmarshal(raw, &t) == nil && t.OwnerUUID == userUUID && !t.Revoked {
			revoke = append(revoke, t)
		}
		return true
	})
	for _, t := range revoke {
		t.Revoked = true
		s.store.Put("api_client_authorizations", t.UUID, t)
	}
}

// selectFields answers a get, create or update with only the attributes
// the "select" parameter names (and kind), as upstream does; clients use
// it to keep a big manifest out of the response.
func selectFields(params map[string]any, v any) any {
	sel, ok := params["select"].([]any)
	if !ok || len(sel) == 0 {
		return v
	}
	var all map[string]any
	if remarshal(v, &all) != nil {
		return v
	}
	out := map[string]any{"kind": all["kind"]}
	for _, f := range sel {
		if k, ok := f.(string); ok {
			if val, ok := all[k]; ok {
				out[k] = val
			}
		}
	}
	return out
}

func remarshal(in any, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return errorf(http.StatusUnprocessableEntity, "invalid attribute value: %v", err)
	}
	return nil
}

func tokenOut(t token) keepclient.APIClientAuthorization {
	out := t.APIClientAuthorization
	out.Kind = "arvados#apiClientAuthorization"
	return out
}

func (s *Server) tokens(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "current":
		return tokenOut(sess.tok), nil
	case method == http.MethodGet && id == "":
		var items []keepclient.APIClientAuthorization
		s.store.Each("api_client_authorizations", func(_ string, raw []byte) bool {
			var t token
			if json.Unmarshal(raw, &t) == nil && t.OwnerUUID == sess.user.UUID && !t.Revoked {
				items = append(items, tokenOut(t))
			}
			return true
		})
		return list("arvados#apiClientAuthorizationList", items), nil
	case method == http.MethodPost && id == "":
		if sess.user.Uploader {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not create tokens")
		}
		if !contains(sess.tok.Scopes, "all") {
			// PROTOCOL 13.15: a scoped token must not mint a broader one.
			return nil, errorf(http.StatusForbidden, "Forbidden: a scoped token may not create tokens")
		}
		a, err := attrs(params, "api_client_authorization", "scopes", "expires_at", "owner_uuid")
		if err != nil {
			return nil, err
		}
		var req keepclient.APIClientAuthorization
		if err := remarshal(a, &req); err != nil {
			return nil, err
		}
		owner := sess.user.UUID
		if req.OwnerUUID != "" && req.OwnerUUID != owner {
			if !sess.user.IsAdmin {
				return nil, errorf(http.StatusForbidden, "Forbidden: only admins may create tokens for other users")
			}
			owner = req.OwnerUUID
		}
		scopes := req.Scopes
		if scopes == nil {
			scopes = []string{"all"}
		}
		t, err := s.newToken(owner, scopes, req.ExpiresAt)
		return tokenOut(t), err
	case method == http.MethodDelete && id != "":
		var t token
		if err := s.store.Get("api_client_authorizations", id, &t); err != nil || (t.OwnerUUID != sess.user.UUID && !sess.user.IsAdmin) {
			return nil, errorf(http.StatusNotFound, "token %s not found", id)
		}
		t.Revoked = true
		return tokenOut(t), s.store.Put("api_client_authorizations", id, t)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

var collectionAttrs = []string{"name", "description", "properties", "manifest_text", "owner_uuid", "portable_data_hash",
	"replication_desired", "storage_classes_desired", "trash_at", "delete_at", "preserve_version", "is_trashed"}

func (s *Server) collectionOut(sess *session, c keepclient.Collection) keepclient.Collection {
	c.Kind = "arvados#collection"
	if c.ManifestText != "" && !c.IsTrashed {
		exp := time.Now().Add(s.opts.BlobSigningTTL)
		if c.TrashAt != nil && c.TrashAt.Before(exp) {
			exp = *c.TrashAt
		}
		c.ManifestText = keepclient.SignManifest(c.ManifestText, sess.token, exp, s.opts.BlobSigningTTL, s.key)
	}
	if c.Properties == nil {
		c.Properties = map[string]any{}
	}
	if c.StorageClassesConfirmed == nil {
		c.StorageClassesConfirmed = []string{}
	}
	return c
}

// checkManifest verifies signatures (non-admins), validates, strips +A and
// fills in PDH and counts.
func (s *Server) checkManifest(sess *session, c *keepclient.Collection, clientPDH string) error {
	text := c.ManifestText
	if !sess.user.IsAdmin {
		for _, line := range strings.Split(text, "\n") {
			words := strings.Split(line, " ")
			for _, w := range words[min(1, len(words)):] {
				l, err := keepclient.ParseLocator(w)
				if err != nil || l.Size < 0 || (l.Hash == keepclient.EmptyHash && l.Size == 0) {
					continue
				}
				if err := keepclient.VerifySignature(w, sess.token, s.opts.BlobSigningTTL, s.key, time.Now()); err != nil {
					return errorf(http.StatusForbidden, "Forbidden: block locator %s: %v", l.Stripped(), err)
				}
			}
		}
	}
	if err := keepclient.ValidateManifest(text); err != nil {
		return errorf(http.StatusUnprocessableEntity, "Manifest text %v", err)
	}
	stripped := keepclient.StripSignatures(text)
	pdh := keepclient.PortableDataHash(stripped)
	if clientPDH != "" && !strings.HasPrefix(clientPDH, pdh[:32]) {
		return errorf(http.StatusUnprocessableEntity, "portable_data_hash %s does not match the manifest (%s)", clientPDH, pdh)
	}
	m, err := keepclient.ParseManifest(stripped)
	if err != nil {
		return errorf(http.StatusUnprocessableEntity, "Manifest text %v", err)
	}
	c.ManifestText, c.PortableDataHash = stripped, pdh
	c.FileCount, c.FileSizeTotal = int64(len(m.Files)), 0
	for _, f := range m.Files {
		c.FileSizeTotal += f.Size()
	}
	return nil
}

// uniqueName enforces (owner, name) uniqueness among untrashed collections.
func (s *Server) uniqueName(c *keepclient.Collection, ensure bool) error {
	if c.Name == "" {
		return nil
	}
	clash := false
	s.store.Each("collections", func(uuid string, raw []byte) bool {
		var o keepclient.Collection
		if uuid != c.UUID && json.Unmarshal(raw, &o) == nil && o.OwnerUUID == c.OwnerUUID && o.Name == c.Name && !o.IsTrashed {
			clash = true
			return false
		}
		return true
	})
	if !clash {
		return nil
	}
	if !ensure {
		return errorf(http.StatusUnprocessableEntity, "a collection named %q already exists in %s (use ensure_unique_name)", c.Name, c.OwnerUUID)
	}
	name := c.Name
	if len(name) > 237 {
		name = name[:237]
	}
	c.Name = name + " (" + c.UUID[12:] + ")"
	return nil
}

func (s *Server) collections(sess *session, method, id string, params map[string]any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case method == http.MethodGet && id == "":
		var items []keepclient.Collection
		selectManifest := false
		if sel, ok := params["select"].([]any); ok {
			for _, v := range sel {
				if v == "manifest_text" {
					selectManifest = true
				}
			}
		}
		err := s.each(sess, "collections", params, func(raw []byte) {
			var c keepclient.Collection
			if json.Unmarshal(raw, &c) == nil && !c.IsTrashed {
				if !selectManifest {
					c.ManifestText = ""
				}
				items = append(items, s.collectionOut(sess, c))
			}
		})
		return list("arvados#collectionList", items), err
	case method == http.MethodGet:
		c, err := s.getCollection(sess, id, boolParam(params, "include_trash"))
		if err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionOut(sess, c)), nil
	case method == http.MethodPost && id == "":
		a, err := attrs(params, "collection", collectionAttrs...)
		if err != nil {
			return nil, err
		}
		var c keepclient.Collection
		if err := remarshal(a, &c); err != nil {
			return nil, err
		}
		owner := c.OwnerUUID
		if owner == "" {
			owner = sess.user.UUID
		}
		if !s.canRead(sess, owner) {
			return nil, errorf(http.StatusForbidden, "Forbidden: cannot write to owner %s", owner)
		}
		if sess.user.Uploader && owner != sess.user.UUID {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may only own their own collections")
		}
		c.Common = common(s.uuid("4zz18"), owner, time.Now().UTC())
		c.ModifiedByUserUUID = sess.user.UUID
		c.CurrentVersionUUID, c.Version = c.UUID, 1
		if err := s.checkManifest(sess, &c, c.PortableDataHash); err != nil {
			return nil, err
		}
		if err := s.uniqueName(&c, boolParam(params, "ensure_unique_name")); err != nil {
			return nil, err
		}
		if err := s.store.Put("collections", c.UUID, c); err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionOut(sess, c)), nil
	case method == http.MethodPatch && id != "":
		c, err := s.getCollection(sess, id, false)
		if err != nil {
			return nil, err
		}
		if sess.user.Uploader && c.OwnerUUID != sess.user.UUID {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may only update collections they created")
		}
		a, err := attrs(params, "collection", collectionAttrs...)
		if err != nil {
			return nil, err
		}
		if o, ok := a["owner_uuid"].(string); ok && o != c.OwnerUUID {
			if sess.user.Uploader || !s.canRead(sess, o) {
				return nil, errorf(http.StatusForbidden, "Forbidden: cannot move collection to owner %s", o)
			}
		}
		old := c.ManifestText
		if err := remarshal(a, &c); err != nil {
			return nil, err
		}
		if _, ok := a["manifest_text"]; ok && c.ManifestText != old {
			pdh, _ := a["portable_data_hash"].(string)
			if err := s.checkManifest(sess, &c, pdh); err != nil {
				return nil, err
			}
		}
		if err := s.uniqueName(&c, boolParam(params, "ensure_unique_name")); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		c.ModifiedAt, c.ModifiedByUserUUID = &now, sess.user.UUID
		c.Version++
		if err := s.store.Put("collections", c.UUID, c); err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionOut(sess, c)), nil
	case method == http.MethodDelete && id != "":
		c, err := s.getCollection(sess, id, true)
		if err != nil {
			return nil, err
		}
		if sess.user.Uploader && c.OwnerUUID != sess.user.UUID {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may only delete collections they created")
		}
		now := time.Now().UTC()
		c.TrashAt, c.IsTrashed = &now, true
		return s.collectionOut(sess, c), s.store.Put("collections", c.UUID, c)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

// getCollection finds a readable collection by UUID or PDH. A trashed one
// is found by UUID only with includeTrash (upstream: include_trash, and
// always for delete), else it is a 404 like one that never existed.
func (s *Server) getCollection(sess *session, id string, includeTrash bool) (keepclient.Collection, error) {
	var c keepclient.Collection
	if uuidRe.MatchString(id) {
		if err := s.store.Get("collections", id, &c); err != nil || !s.canRead(sess, c.OwnerUUID) || (c.IsTrashed && !includeTrash) {
			return c, errorf(http.StatusNotFound, "collection %s not found", id)
		}
		return c, nil
	}
	if l, err := keepclient.ParseLocator(id); err == nil {
		found := false
		s.store.Each("collections", func(_ string, raw []byte) bool {
			var o keepclient.Collection
			if json.Unmarshal(raw, &o) == nil && strings.HasPrefix(o.PortableDataHash, l.Hash) && s.canRead(sess, o.OwnerUUID) && !o.IsTrashed {
				c, found = keepclient.Collection{PortableDataHash: o.PortableDataHash, ManifestText: o.ManifestText}, true
				c.UUID = o.PortableDataHash
				return false
			}
			return true
		})
		if found {
			return c, nil
		}
	}
	return c, errorf(http.StatusNotFound, "collection %s not found", id)
}

// each calls f with every readable object of resource that passes the
// request's filters.
func (s *Server) each(sess *session, resource string, params map[string]any, f func(raw []byte)) error {
	filters, err := parseFilters(params["filters"])
	if err != nil {
		return err
	}
	return s.store.Each(resource, func(_ string, raw []byte) bool {
		var obj map[string]any
		if json.Unmarshal(raw, &obj) != nil {
			return true
		}
		owner, _ := obj["owner_uuid"].(string)
		if resource == "logs" {
			if oo, _ := obj["object_owner_uuid"].(string); oo != "" && s.canRead(sess, oo) {
				owner = oo
			}
		}
		if !s.canRead(sess, owner) || !matchFilters(obj, filters) {
			return true
		}
		f(raw)
		return true
	})
}

type filter struct {
	attr, op string
	val      any
}

func parseFilters(v any) ([]filter, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errorf(http.StatusUnprocessableEntity, "filters must be a JSON array")
	}
	var out []filter
	for _, item := range arr {
		f, ok := item.([]any)
		if !ok || len(f) != 3 {
			return nil, errorf(http.StatusUnprocessableEntity, "each filter must be [attribute, operator, operand]")
		}
		attr, ok1 := f[0].(string)
		op, ok2 := f[1].(string)
		if !ok1 || !ok2 {
			return nil, errorf(http.StatusUnprocessableEntity, "invalid filter %v", f)
		}
		switch strings.ToLower(op) {
		case "=", "!=", "<>", "<", "<=", ">", ">=", "like", "ilike", "in", "not in", "exists", "is_a":
		default:
			return nil, errorf(http.StatusUnprocessableEntity, "unsupported filter operator %q", op)
		}
		out = append(out, filter{attr, strings.ToLower(op), f[2]})
	}
	return out, nil
}

func lookup(obj map[string]any, attr string) (any, bool) {
	if strings.HasPrefix(attr, "properties.") {
		props, _ := obj["properties"].(map[string]any)
		v, ok := props[strings.TrimPrefix(attr, "properties.")]
		return v, ok
	}
	v, ok := obj[attr]
	return v, ok
}

func matchFilters(obj map[string]any, filters []filter) bool {
	for _, f := range filters {
		v, present := lookup(obj, f.attr)
		vs, fs := fmt.Sprint(v), fmt.Sprint(f.val)
		ok := false
		switch f.op {
		case "=":
			ok = present && vs == fs
		case "!=", "<>":
			ok = !present || vs != fs
		case "<", "<=", ">", ">=":
			a, e1 := strconv.ParseFloat(vs, 64)
			b, e2 := strconv.ParseFloat(fs, 64)
			c := strings.Compare(vs, fs)
			if e1 == nil && e2 == nil {
				c = map[bool]int{true: -1, false: 1}[a < b]
				if a == b {
					c = 0
				}
			}
			ok = map[string]bool{"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[f.op]
		case "like", "ilike":
			pat := "^" + strings.NewReplacer("%", ".*", "_", ".").Replace(regexp.QuoteMeta(fs)) + "$"
			if f.op == "ilike" {
				pat = "(?i)" + pat
			}
			ok = regexp.MustCompile(pat).MatchString(vs)
		case "in", "not in":
			arr, _ := f.val.([]any)
			in := false
			for _, a := range arr {
				if fmt.Sprint(a) == vs {
					in = true
				}
			}
			ok = in == (f.op == "in")
		case "exists":
			ok = present == (fs == "true")
		case "is_a":
			kind, _ := obj["kind"].(string)
			ok = kind == fs
		}
		if !ok {
			return false
		}
	}
	return true
}

var kindByInfix = map[string]string{"4zz18": "arvados#collection", "tpzed": "arvados#user", "o0j2j": "arvados#link",
	"57u5n": "arvados#log", "gj3su": "arvados#apiClientAuthorization", "j7d0g": "arvados#group"}

func kindOf(uuid string) string {
	if uuidRe.MatchString(uuid) {
		return kindByInfix[uuid[6:11]]
	}
	return ""
}

// objectOwner returns the owner of a readable object, or "" when uuid does
// not name one the server holds.
func (s *Server) objectOwner(uuid string) (string, string) {
	res := map[string]string{"4zz18": "collections", "tpzed": "users", "o0j2j": "links", "57u5n": "logs"}[uuid[6:11]]
	if res == "" {
		return "", ""
	}
	var o struct {
		OwnerUUID string `json:"owner_uuid"`
	}
	if s.store.Get(res, uuid, &o) != nil {
		return "", ""
	}
	if res == "users" {
		return uuid, res
	}
	return o.OwnerUUID, res
}

func (s *Server) links(sess *session, method, id string, params map[string]any) (any, error) {
	out := func(l keepclient.Link) keepclient.Link {
		l.Kind, l.HeadKind, l.TailKind = "arvados#link", kindOf(l.HeadUUID), kindOf(l.TailUUID)
		if l.Properties == nil {
			l.Properties = map[string]any{}
		}
		return l
	}
	switch {
	case method == http.MethodGet && id == "":
		var items []keepclient.Link
		err := s.each(sess, "links", params, func(raw []byte) {
			var l keepclient.Link
			if json.Unmarshal(raw, &l) == nil {
				items = append(items, out(l))
			}
		})
		return list("arvados#linkList", items), err
	case method == http.MethodGet:
		var l keepclient.Link
		if err := s.store.Get("links", id, &l); err != nil || !s.canRead(sess, l.OwnerUUID) {
			return nil, errorf(http.StatusNotFound, "link %s not found", id)
		}
		return out(l), nil
	case method == http.MethodPost && id == "":
		a, err := attrs(params, "link", "link_class", "name", "head_uuid", "tail_uuid", "properties", "owner_uuid")
		if err != nil {
			return nil, err
		}
		var l keepclient.Link
		if err := remarshal(a, &l); err != nil {
			return nil, err
		}
		if l.LinkClass == "name" {
			return nil, errorf(http.StatusUnprocessableEntity, "name links are obsolete")
		}
		if sess.user.Uploader {
			if l.LinkClass == "permission" {
				return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not create permission links")
			}
			if owner, res := s.objectOwner(l.HeadUUID); res != "collections" || owner != sess.user.UUID {
				return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may only link their own collections")
			}
		}
		for _, u := range []string{l.HeadUUID, l.TailUUID} {
			if uuidRe.MatchString(u) {
				if owner, res := s.objectOwner(u); res == "" || !s.canRead(sess, owner) {
					return nil, errorf(http.StatusUnprocessableEntity, "'%s' not found", u)
				}
			}
		}
		owner := sess.user.UUID
		if l.LinkClass == "permission" {
			ho, _ := s.objectOwner(l.HeadUUID)
			if !s.canRead(sess, ho) {
				return nil, errorf(http.StatusForbidden, "Forbidden: permission links need can_manage on the head")
			}
			owner = s.systemUserUUID()
		} else if l.OwnerUUID != "" && !s.canRead(sess, l.OwnerUUID) {
			return nil, errorf(http.StatusForbidden, "Forbidden: cannot write to owner %s", l.OwnerUUID)
		} else if l.OwnerUUID != "" {
			owner = l.OwnerUUID
		}
		l.Common = common(s.uuid("o0j2j"), owner, time.Now().UTC())
		l.ModifiedByUserUUID = sess.user.UUID
		return out(l), s.store.Put("links", l.UUID, l)
	case method == http.MethodDelete && id != "":
		var l keepclient.Link
		if err := s.store.Get("links", id, &l); err != nil || !s.canRead(sess, l.OwnerUUID) {
			return nil, errorf(http.StatusNotFound, "link %s not found", id)
		}
		return out(l), s.store.Delete("links", id)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

func (s *Server) logs(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "":
		var items []keepclient.Log
		err := s.each(sess, "logs", params, func(raw []byte) {
			var l keepclient.Log
			if json.Unmarshal(raw, &l) == nil {
				items = append(items, l)
			}
		})
		return list("arvados#logList", items), err
	case method == http.MethodPost && id == "":
		a, err := attrs(params, "log", "event_type", "object_uuid", "summary", "properties", "event_at", "object_owner_uuid")
		if err != nil {
			return nil, err
		}
		var l keepclient.Log
		if err := remarshal(a, &l); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		l.Common = common(s.uuid("57u5n"), sess.user.UUID, now)
		l.Kind = "arvados#log"
		l.ID = now.UnixNano()
		if l.EventAt == nil {
			l.EventAt = &now
		}
		l.ObjectKind = kindOf(l.ObjectUUID)
		return l, s.store.Put("logs", l.UUID, l)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

func accountOut(u user) admin.Account {
	return admin.Account{UUID: u.UUID, OwnerUUID: u.OwnerUUID, Name: u.FullName,
		IsActive: u.IsActive, ExpiresAt: u.ExpiresAt, CreatedAt: u.CreatedAt}
}

func (s *Server) uploaderAccounts(sess *session, method, id, action string, params map[string]any) (any, error) {
	if sess.user.Uploader {
		return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not manage uploader accounts")
	}
	get := func() (user, error) {
		var u user
		if err := s.store.Get("users", id, &u); err != nil || !u.Uploader || !(sess.user.IsAdmin || u.OwnerUUID == sess.user.UUID) {
			return u, errorf(http.StatusNotFound, "uploader account %s not found", id)
		}
		return u, nil
	}
	switch {
	case method == http.MethodPost && id == "":
		a, err := attrs(params, "uploader_account", "name", "expires_at")
		if err != nil {
			return nil, err
		}
		name, _ := a["name"].(string)
		if strings.TrimSpace(name) == "" {
			return nil, errorf(http.StatusUnprocessableEntity, "uploader_account needs a name")
		}
		var exp *time.Time
		if e, ok := a["expires_at"].(string); ok && e != "" {
			t, err := time.Parse(time.RFC3339Nano, e)
			if err != nil {
				return nil, errorf(http.StatusUnprocessableEntity, "expires_at %q is not an RFC 3339 time", e)
			}
			if !t.After(time.Now()) {
				return nil, errorf(http.StatusUnprocessableEntity, "expires_at %q is in the past", e)
			}
			exp = &t
		}
		now := time.Now().UTC()
		u := user{User: keepclient.User{Common: common(s.uuid("tpzed"), sess.user.UUID, now), FullName: name, IsActive: true,
			Prefs: map[string]any{"uploader": true}}, Uploader: true, ExpiresAt: exp}
		u.Kind = "arvados#user"
		if err := s.store.Put("users", u.UUID, u); err != nil {
			return nil, err
		}
		t, err := s.newToken(u.UUID, admin.UploaderScopes, exp)
		if err != nil {
			return nil, err
		}
		out := accountOut(u)
		out.APIToken = t.TokenV2()
		return out, nil
	case method == http.MethodGet && id == "":
		var items []admin.Account
		s.store.Each("users", func(_ string, raw []byte) bool {
			var u user
			if json.Unmarshal(raw, &u) == nil && u.Uploader && (sess.user.IsAdmin || u.OwnerUUID == sess.user.UUID) {
				items = append(items, accountOut(u))
			}
			return true
		})
		return list("arvados#uploaderAccountList", items), nil
	case method == http.MethodGet && action == "":
		u, err := get()
		return accountOut(u), err
	case method == http.MethodPost && action == "deactivate":
		u, err := get()
		if err != nil {
			return nil, err
		}
		u.IsActive = false
		s.revokeTokens(u.UUID)
		return accountOut(u), s.store.Put("users", u.UUID, u)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}
