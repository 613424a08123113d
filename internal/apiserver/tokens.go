package apiserver

import (
	"encoding/json"
	"net/http"

	"github.com/arv-upload/arv-upload/arvados"
)

func tokenOut(t token) arvados.APIClientAuthorization {
	out := t.APIClientAuthorization
	out.Kind = "arvados#apiClientAuthorization"
	return out
}

func (s *Server) tokens(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "current":
		return tokenOut(sess.tok), nil
	case method == http.MethodGet && id == "":
		var items []arvados.APIClientAuthorization
		err := s.store.Each("api_client_authorizations", func(_ string, raw []byte) bool {
			var t token
			if json.Unmarshal(raw, &t) == nil && t.OwnerUUID == sess.user.UUID && !t.Revoked {
				items = append(items, tokenOut(t))
			}
			return true
		})
		return list("arvados#apiClientAuthorizationList", items), err
	case method == http.MethodPost && id == "":
		if sess.user.Uploader {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not create tokens")
		}
		if !contains(sess.tok.Scopes, "all") && !sess.user.IsAdmin {
			// PROTOCOL 13.15: a scoped token must not mint a broader one.
			// An admin's token scoped to this path is the exception
			// (upstream allows any scoped token here): an account broker
			// runs with one, to make its accounts' tokens.
			return nil, errorf(http.StatusForbidden, "Forbidden: a scoped token may not create tokens")
		}
		a, err := attrs(params, "api_client_authorization", "scopes", "expires_at", "owner_uuid")
		if err != nil {
			return nil, err
		}
		var req arvados.APIClientAuthorization
		if err := remarshal(a, &req); err != nil {
			return nil, err
		}
		owner := sess.user.UUID
		if req.OwnerUUID != "" && req.OwnerUUID != owner {
			if !sess.user.IsAdmin {
				return nil, errorf(http.StatusForbidden, "Forbidden: only admins may create tokens for other users")
			}
			if err := s.checkOwner(sess, req.OwnerUUID, false); err != nil {
				return nil, err
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
