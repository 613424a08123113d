package apiserver

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

func linkOut(l arvados.Link) arvados.Link {
	l.Kind, l.HeadKind, l.TailKind = "arvados#link", kindOf(l.HeadUUID), kindOf(l.TailUUID)
	if l.Properties == nil {
		l.Properties = map[string]any{}
	}
	return l
}

// linkReadable: a link is readable through its owner, as any object; a
// permission link (owned by the system user) also by its tail and its
// head when they are the caller, and by whoever may manage its head, as
// upstream.
func (s *Server) linkReadable(a *access, uuid, owner, class, head, tail string) bool {
	if a.can(uuid, owner, permRead) {
		return true
	}
	if class != "permission" {
		return false
	}
	if head == a.user || tail == a.user {
		return true
	}
	obj, ok := s.lookup(head)
	return ok && a.can(obj.uuid, obj.owner, permManage)
}

func (s *Server) links(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "":
		var items []arvados.Link
		err := s.each(sess, "links", params, func(raw []byte) {
			var l arvados.Link
			if json.Unmarshal(raw, &l) == nil {
				items = append(items, linkOut(l))
			}
		})
		return list("arvados#linkList", items), err
	case method == http.MethodGet:
		l, err := s.getLink(sess, id)
		if err != nil {
			return nil, err
		}
		return linkOut(l), nil
	case method == http.MethodPost && id == "":
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.createLink(sess, params)
	case method == http.MethodDelete && id != "":
		s.mu.Lock()
		defer s.mu.Unlock()
		l, err := s.getLink(sess, id)
		if err != nil {
			return nil, err
		}
		a := s.access(sess)
		if l.LinkClass == "permission" {
			// As upstream: only who may manage the head may revoke.
			if obj, _ := s.lookup(l.HeadUUID); !a.can(obj.uuid, obj.owner, permManage) {
				return nil, errorf(http.StatusForbidden, "Forbidden: deleting a permission link needs can_manage on its head %s", l.HeadUUID)
			}
		} else if !a.can(l.UUID, l.OwnerUUID, permWrite) {
			return nil, errorf(http.StatusForbidden, "Forbidden: link %s is not writable by %s", l.UUID, sess.user.UUID)
		}
		if err := s.store.Delete("links", id); err != nil {
			return nil, err
		}
		s.perms.deleteLink(id)
		return linkOut(l), nil
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

func (s *Server) getLink(sess *session, id string) (arvados.Link, error) {
	var l arvados.Link
	if err := s.store.Get("links", id, &l); err != nil ||
		!s.linkReadable(s.access(sess), l.UUID, l.OwnerUUID, l.LinkClass, l.HeadUUID, l.TailUUID) {
		return l, errorf(http.StatusNotFound, "link %s not found", id)
	}
	return l, nil
}

// createLink: PROTOCOL 9.5 and 15.1. Heads and tails that are UUIDs must
// be readable; a permission link needs a user or role as tail and
// can_manage on its head, and is owned by the system user. Uploader
// accounts may link only collections they created, never with permission
// links.
func (s *Server) createLink(sess *session, params map[string]any) (any, error) {
	attrs, err := attrs(params, "link", "link_class", "name", "head_uuid", "tail_uuid", "properties", "owner_uuid")
	if err != nil {
		return nil, err
	}
	var l arvados.Link
	if err := remarshal(attrs, &l); err != nil {
		return nil, err
	}
	if err := s.checkVocabulary("link", l.Properties); err != nil {
		return nil, err
	}
	if l.LinkClass == "name" {
		return nil, errorf(http.StatusUnprocessableEntity, "name links are obsolete")
	}
	a := s.access(sess)
	if sess.user.Uploader {
		if l.LinkClass == "permission" {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not create permission links")
		}
		var c collection
		if !uuidRe.MatchString(l.HeadUUID) || s.store.Get("collections", l.HeadUUID, &c) != nil || c.createdBy() != sess.user.UUID {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may only link collections they created")
		}
	}
	isPerm := l.LinkClass == "permission"
	if isPerm {
		if permByName[l.Name] == permNone {
			return nil, errorf(http.StatusUnprocessableEntity, "permission link name %q is invalid: must be one of can_read, can_write, can_manage, can_login", l.Name)
		}
		// The tail need not be readable: a user shares with another
		// by UUID (upstream reads it through the "All users" group).
		if tail, ok := a.st.nodes[l.TailUUID]; !ok || (tail.group && tail.class != "role") {
			return nil, errorf(http.StatusUnprocessableEntity, "tail_uuid %q of a permission link must be a user or a role", l.TailUUID)
		}
	}
	for _, u := range []string{l.HeadUUID, l.TailUUID} {
		if !uuidRe.MatchString(u) || (isPerm && u == l.TailUUID) {
			continue
		}
		if obj, ok := s.lookup(u); !ok || !a.can(obj.uuid, obj.owner, permRead) {
			return nil, errorf(http.StatusUnprocessableEntity, "'%s' not found", u)
		}
	}
	owner := sess.user.UUID
	if isPerm {
		if !sess.user.IsAdmin {
			head, ok := s.lookup(l.HeadUUID)
			if !ok {
				return nil, errorf(http.StatusUnprocessableEntity, "head_uuid %q does not exist", l.HeadUUID)
			}
			if !a.can(head.uuid, head.owner, permManage) {
				return nil, errorf(http.StatusForbidden, "Forbidden: permission links need can_manage on the head %s", l.HeadUUID)
			}
		}
		owner = s.systemUserUUID()
	} else if l.OwnerUUID != "" {
		if err := s.checkOwner(sess, l.OwnerUUID, true); err != nil {
			return nil, err
		}
		owner = l.OwnerUUID
	}
	l.Common = common(s.uuid("o0j2j"), owner, time.Now().UTC())
	l.ModifiedByUserUUID = sess.user.UUID
	if err := s.store.Put("links", l.UUID, l); err != nil {
		return nil, err
	}
	if isPerm {
		s.perms.putLink(l)
	}
	return linkOut(l), nil
}
