package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

func accountOut(u user) arvados.UploaderAccount {
	return arvados.UploaderAccount{UUID: u.UUID, OwnerUUID: u.OwnerUUID, Name: u.FullName,
		IsActive: u.IsActive, ExpiresAt: u.ExpiresAt, CreatedAt: u.CreatedAt, ProjectUUID: u.ProjectUUID}
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
		s.mu.Lock()
		defer s.mu.Unlock()
		a, err := attrs(params, "uploader_account", "name", "expires_at", "project_uuid")
		if err != nil {
			return nil, err
		}
		project, _ := a["project_uuid"].(string)
		if project != "" {
			if err := s.checkUploadProject(sess, project); err != nil {
				return nil, err
			}
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
		u := user{User: arvados.User{Common: common(s.uuid("tpzed"), sess.user.UUID, now), FullName: name, IsActive: true,
			Prefs: map[string]any{"uploader": true}}, Uploader: true, ExpiresAt: exp, ProjectUUID: project}
		u.Kind = "arvados#user"
		if err := s.store.Put("users", u.UUID, u); err != nil {
			return nil, err
		}
		s.perms.putUser(u.User)
		// The grant before the token: an account whose token was handed
		// out can write where its project_uuid says.
		if project != "" {
			l := arvados.Link{Common: common(s.uuid("o0j2j"), s.systemUserUUID(), now), LinkClass: "permission",
				Name: "can_write", TailUUID: u.UUID, HeadUUID: project, Properties: map[string]any{}}
			l.ModifiedByUserUUID = sess.user.UUID
			if err := s.store.Put("links", l.UUID, l); err != nil {
				return nil, err
			}
			s.perms.putLink(l)
		}
		t, err := s.newToken(u.UUID, arvados.UploaderScopes, exp)
		if err != nil {
			return nil, err
		}
		out := accountOut(u)
		out.APIToken = t.TokenV2()
		return out, nil
	case method == http.MethodGet && id == "":
		var items []arvados.UploaderAccount
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

// checkUploadProject refuses a project_uuid for a new uploader account
// that is not a project the caller may manage (giving the account
// can_write there is sharing the project, which takes can_manage).
func (s *Server) checkUploadProject(sess *session, project string) error {
	a := s.access(sess)
	n, ok := a.st.nodes[project]
	if !ok || !n.group || !a.canNode(project, permRead) {
		return errorf(http.StatusUnprocessableEntity, "project_uuid '%s' not found", project)
	}
	if n.class != "project" {
		return errorf(http.StatusUnprocessableEntity, "project_uuid %s is a %s group, not a project", project, n.class)
	}
	if !a.canNode(project, permManage) {
		return errorf(http.StatusForbidden, "Forbidden: giving an uploader account can_write on project %s needs can_manage there", project)
	}
	if trashedAt(n.trashAt, time.Now()) || a.st.inTrash(n.owner) {
		return errorf(http.StatusUnprocessableEntity, "project %s is in the trash; untrash it (groups/%s/untrash) or choose another project", project, project)
	}
	return nil
}
