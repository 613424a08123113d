package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

func (s *Server) userOut(sess *session, u user) arvados.User {
	out := u.User
	out.Kind = "arvados#user"
	l := s.access(sess).level(u.UUID, u.OwnerUUID)
	out.CanWrite, out.CanManage = l >= permWrite, l >= permManage
	if out.Prefs == nil {
		out.Prefs = map[string]any{}
	}
	return out
}

func (s *Server) users(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "":
		var items []arvados.User
		a := s.access(sess)
		err := s.store.Each("users", func(_ string, raw []byte) bool {
			var u user
			if json.Unmarshal(raw, &u) == nil && a.can(u.UUID, u.OwnerUUID, permRead) {
				items = append(items, s.userOut(sess, u))
			}
			return true
		})
		return list("arvados#userList", items), err
	case method == http.MethodGet:
		u, err := s.getUser(sess, id)
		if err != nil {
			return nil, err
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
		var nu arvados.User
		if err := remarshal(a, &nu); err != nil {
			return nil, err
		}
		owner := nu.OwnerUUID
		if owner == "" {
			owner = s.systemUserUUID()
		} else if err := s.checkOwner(sess, owner, false); err != nil {
			return nil, err
		}
		nu.Common = common(s.uuid("tpzed"), owner, time.Now().UTC())
		nu.Kind = "arvados#user"
		if err := s.store.Put("users", nu.UUID, user{User: nu}); err != nil {
			return nil, err
		}
		s.perms.putUser(nu)
		return s.userOut(sess, user{User: nu}), nil
	case method == http.MethodPatch && id != "":
		u, err := s.getUser(sess, id)
		if err != nil {
			return nil, err
		}
		acc := s.access(sess)
		if !acc.can(u.UUID, u.OwnerUUID, permWrite) {
			return nil, errorf(http.StatusForbidden, "Forbidden: user %s is not writable by %s", id, sess.user.UUID)
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
			// Deactivating a user (an uploader account, say) takes
			// can_manage on it, as owning it gives.
			if id == sess.user.UUID || !acc.can(u.UUID, u.OwnerUUID, permManage) {
				delete(a, "is_active")
			}
		}
		if err := remarshal(a, &u.User); err != nil {
			return nil, err
		}
		if !u.IsActive {
			if err := s.revokeTokens(u.UUID); err != nil {
				return nil, err
			}
		}
		now := time.Now().UTC()
		u.ModifiedAt, u.ModifiedByUserUUID = &now, sess.user.UUID
		return s.userOut(sess, u), s.store.Put("users", id, u)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

// getUser finds a user the caller may read, else 404.
func (s *Server) getUser(sess *session, id string) (user, error) {
	var u user
	if err := s.store.Get("users", id, &u); err != nil || !s.access(sess).can(u.UUID, u.OwnerUUID, permRead) {
		return u, errorf(http.StatusNotFound, "user %s not found", id)
	}
	return u, nil
}

func (s *Server) revokeTokens(userUUID string) error {
	var revoke []token
	err := s.store.Each("api_client_authorizations", func(_ string, raw []byte) bool {
		var t token
		if json.Unmarshal(raw, &t) == nil && t.OwnerUUID == userUUID && !t.Revoked {
			revoke = append(revoke, t)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("find tokens of %s: %w", userUUID, err)
	}
	for _, t := range revoke {
		t.Revoked = true
		if err := s.store.Put("api_client_authorizations", t.UUID, t); err != nil {
			return fmt.Errorf("revoke token %s: %w", t.UUID, err)
		}
	}
	return nil
}

// unsetup is upstream's users/{uuid}/unsetup (PROTOCOL 15.1): admin only;
// deletes the user's tokens and the permission links it is the tail of (its
// grants, so re-activating it later restores nothing), clears its prefs and
// marks it inactive and not admin. Links whose head is the user (who manages
// it) stay, as upstream.
func (s *Server) unsetup(sess *session, id string) (any, error) {
	if !sess.user.IsAdmin {
		return nil, errorf(http.StatusForbidden, "Forbidden: only admins may unsetup users")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.getUser(sess, id)
	if err != nil {
		return nil, err
	}
	if u.UUID == s.systemUserUUID() {
		return nil, errorf(http.StatusUnprocessableEntity, "the system root user cannot be deactivated")
	}
	if err := s.revokeTokens(u.UUID); err != nil {
		return nil, err
	}
	var grants []string
	err = s.store.Each("links", func(key string, raw []byte) bool {
		var l arvados.Link
		if json.Unmarshal(raw, &l) == nil && l.LinkClass == "permission" && l.TailUUID == u.UUID {
			grants = append(grants, l.UUID)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("find permission links of %s: %w", u.UUID, err)
	}
	for _, l := range grants {
		if err := s.store.Delete("links", l); err != nil {
			return nil, fmt.Errorf("delete permission link %s: %w", l, err)
		}
		s.perms.deleteLink(l)
	}
	now := time.Now().UTC()
	u.IsActive, u.IsAdmin, u.Prefs = false, false, map[string]any{}
	u.ModifiedAt, u.ModifiedByUserUUID = &now, sess.user.UUID
	if err := s.store.Put("users", u.UUID, u); err != nil {
		return nil, err
	}
	return s.userOut(sess, u), nil
}
