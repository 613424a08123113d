package apiserver

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/keepclient"
)

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
		if err := s.checkVocabulary("link", l.Properties); err != nil {
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
			if _, res := s.objectOwner(l.TailUUID); res != "users" {
				return nil, errorf(http.StatusUnprocessableEntity, "tail_uuid %q of a permission link must be a user", l.TailUUID)
			}
			ho, _ := s.objectOwner(l.HeadUUID)
			if !s.canRead(sess, ho) {
				return nil, errorf(http.StatusForbidden, "Forbidden: permission links need can_manage on the head")
			}
			owner = s.systemUserUUID()
		} else if l.OwnerUUID != "" {
			if err := s.checkOwner(sess, l.OwnerUUID); err != nil {
				return nil, err
			}
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
