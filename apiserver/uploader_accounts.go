package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/admin"
	"github.com/arv-upload/arv-upload/keepclient"
)

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
		err := s.store.Each("users", func(_ string, raw []byte) bool {
			var u user
			if json.Unmarshal(raw, &u) == nil && u.Uploader && (sess.user.IsAdmin || u.OwnerUUID == sess.user.UUID) {
				items = append(items, accountOut(u))
			}
			return true
		})
		return list("arvados#uploaderAccountList", items), err
	case method == http.MethodGet && action == "":
		u, err := get()
		return accountOut(u), err
	case method == http.MethodPost && action == "deactivate":
		u, err := get()
		if err != nil {
			return nil, err
		}
		u.IsActive = false
		if err := s.revokeTokens(u.UUID); err != nil {
			return nil, err
		}
		return accountOut(u), s.store.Put("users", u.UUID, u)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}
