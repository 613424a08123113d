package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

var collectionAttrs = []string{"name", "description", "properties", "manifest_text", "owner_uuid", "portable_data_hash",
	"replication_desired", "storage_classes_desired", "trash_at", "delete_at", "preserve_version", "is_trashed"}

func (s *Server) collectionOut(sess *session, c arvados.Collection) arvados.Collection {
	c.Kind = "arvados#collection"
	if c.ManifestText != "" && !c.IsTrashed && s.signing() {
		exp := time.Now().Add(s.opts.BlobSigningTTL)
		if c.TrashAt != nil && c.TrashAt.Before(exp) {
			exp = *c.TrashAt
		}
		c.ManifestText = arvados.SignManifest(c.ManifestText, sess.token, exp, s.opts.BlobSigningTTL, s.key)
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
func (s *Server) checkManifest(sess *session, c *arvados.Collection, clientPDH string) error {
	text := c.ManifestText
	if !sess.user.IsAdmin && s.signing() {
		// Every word after a line's first that parses as a locator with a
		// size, but the empty block's, must carry a valid signature. The
		// words are walked in place: a manifest may have millions.
		now := time.Now()
		for rest := text; rest != ""; {
			var line, words string
			line, rest, _ = strings.Cut(rest, "\n")
			_, words, _ = strings.Cut(line, " ")
			for words != "" {
				var w string
				w, words, _ = strings.Cut(words, " ")
				if len(w) < 32 || !arvados.IsHash(w[:32]) {
					continue // a file token: ParseLocator would refuse it
				}
				l, err := arvados.ParseLocator(w)
				if err != nil || l.Size < 0 || (l.Hash == arvados.EmptyHash && l.Size == 0) {
					continue
				}
				if err := arvados.VerifySignature(w, sess.token, s.opts.BlobSigningTTL, s.key, now); err != nil {
					return errorf(http.StatusForbidden, "Forbidden: block locator %s: %v", l.Stripped(), err)
				}
			}
		}
	}
	if err := arvados.ValidateManifest(text); err != nil {
		return errorf(http.StatusUnprocessableEntity, "Manifest text %v", err)
	}
	stripped := arvados.StripSignatures(text)
	pdh := arvados.PortableDataHash(stripped)
	if clientPDH != "" && !strings.HasPrefix(clientPDH, pdh[:32]) {
		return errorf(http.StatusUnprocessableEntity, "portable_data_hash %s does not match the manifest (%s)", clientPDH, pdh)
	}
	files, size, err := arvados.ManifestStats(stripped)
	if err != nil {
		return errorf(http.StatusUnprocessableEntity, "Manifest text %v", err)
	}
	c.ManifestText, c.PortableDataHash = stripped, pdh
	c.FileCount, c.FileSizeTotal = files, size
	return nil
}

// uniqueName enforces (owner, name) uniqueness among untrashed current
// collections, from the name index (collection_names.go). The caller
// holds s.mu.
func (s *Server) uniqueName(c *arvados.Collection, ensure bool) error {
	if c.Name == "" || !s.names.taken(c.OwnerUUID+"\x00"+c.Name, c.UUID) {
		return nil
	}
	return nameClash("collection", c.UUID, c.OwnerUUID, &c.Name, ensure)
}

// uniqueIn enforces (owner, name) uniqueness among the objects of
// resource for which clashes (given one's JSON) says they count: a clash
// is a 422, or with ensure the name gets the object's UUID suffix.
func (s *Server) uniqueIn(resource, what, uuid, owner string, name *string, ensure bool, clashes func(raw []byte) bool) error {
	clash := false
	err := s.store.Each(resource, func(other string, raw []byte) bool {
		if other != uuid && clashes(raw) {
			clash = true
			return false
		}
		return true
	})
	if err != nil || !clash {
		return err
	}
	return nameClash(what, uuid, owner, name, ensure)
}

// nameClash answers a name already taken among the owner's objects: a
// 422, or with ensure the name gets the object's UUID suffix.
func nameClash(what, uuid, owner string, name *string, ensure bool) error {
	if !ensure {
		return errorf(http.StatusUnprocessableEntity, "a %s named %q already exists in %s (use ensure_unique_name)", what, *name, owner)
	}
	n := *name
	if len(n) > 237 {
		n = n[:237]
	}
	*name = n + " (" + uuid[12:] + ")"
	return nil
}

// collection is a stored collection: the API object and the user whose
// token created it. The uploader rule needs the latter ("its own
// collections") now that a collection it makes may be owned by a project
// rather than by the uploader; it is not an API attribute.
type collection struct {
	arvados.Collection
	CreatedBy string `json:"created_by_user_uuid,omitempty"`
}

// createdBy is who created c; a collection stored before that was
// recorded was created by its owner as far as the uploader rule goes
// (uploaders could own only what they created).
func (c collection) createdBy() string {
	if c.CreatedBy != "" {
		return c.CreatedBy
	}
	return c.OwnerUUID
}

// collectionView is c as the caller sees it, with can_write and can_manage.
func (s *Server) collectionView(sess *session, a *access, c collection) arvados.Collection {
	out := s.collectionOut(sess, c.Collection)
	l := a.level(c.UUID, c.OwnerUUID)
	out.CanWrite, out.CanManage = l >= permWrite, l >= permManage
	return out
}

func (s *Server) collections(sess *session, method, id string, params map[string]any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.access(sess)
	switch {
	case method == http.MethodGet && id == "":
		var items []arvados.Collection
		selectManifest := false
		if sel, ok := params["select"].([]any); ok {
			for _, v := range sel {
				if v == "manifest_text" {
					selectManifest = true
				}
			}
		}
		oldVersions := boolParam(params, "include_old_versions")
		err := s.each(sess, "collections", params, func(raw []byte) {
			var c collection
			if json.Unmarshal(raw, &c) == nil && (oldVersions || !isPastVersion(c.Collection)) {
				if !selectManifest {
					c.ManifestText = ""
				}
				items = append(items, s.collectionView(sess, a, c))
			}
		})
		return list("arvados#collectionList", items), err
	case method == http.MethodGet:
		c, err := s.getCollection(sess, id, boolParam(params, "include_trash"))
		if err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionView(sess, a, omitManifest(params, c))), nil
	case method == http.MethodPost && id == "":
		attrs, err := attrs(params, "collection", collectionAttrs...)
		if err != nil {
			return nil, err
		}
		var c collection
		if err := decodeCollection(attrs, &c.Collection); err != nil {
			return nil, err
		}
		if err := checkCollectionAttrs(attrs, c.Collection); err != nil {
			return nil, err
		}
		if err := s.checkVocabulary("collection", c.Properties); err != nil {
			return nil, err
		}
		owner := c.OwnerUUID
		if owner == "" {
			owner = sess.user.UUID
		}
		// Uploaders too: they may put collections where they were given
		// can_write (their own account, a project shared with them).
		if err := s.checkOwner(sess, owner, true); err != nil {
			return nil, err
		}
		c.Common = common(s.uuid("4zz18"), owner, time.Now().UTC())
		c.ModifiedByUserUUID, c.CreatedBy = sess.user.UUID, sess.user.UUID
		c.CurrentVersionUUID, c.Version = c.UUID, 1
		s.setManagedProperties(&c.Collection)
		if err := s.checkManifest(sess, &c.Collection, c.PortableDataHash); err != nil {
			return nil, err
		}
		if err := s.uniqueName(&c.Collection, boolParam(params, "ensure_unique_name")); err != nil {
			return nil, err
		}
		if err := s.putCollection(c.Collection, c); err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionView(sess, a, omitManifest(params, c))), nil
	case method == http.MethodPatch && id != "":
		c, err := s.getCollection(sess, id, false)
		if err != nil {
			return nil, err
		}
		if err := s.mayChange(sess, a, c, "update"); err != nil {
			return nil, err
		}
		attrs, err := attrs(params, "collection", collectionAttrs...)
		if err != nil {
			return nil, err
		}
		if o, ok := attrs["owner_uuid"].(string); ok && o != c.OwnerUUID {
			if sess.user.Uploader {
				return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not move collections to another owner")
			}
			// As upstream: write permission on the old owner and on the new.
			if !a.canNode(c.OwnerUUID, permWrite) {
				return nil, errorf(http.StatusForbidden, "Forbidden: cannot move collection away from owner %s", c.OwnerUUID)
			}
			if err := s.checkOwner(sess, o, true); err != nil {
				return nil, err
			}
		}
		old, before := c.ManifestText, c.Collection
		if _, ok := attrs["properties"]; ok {
			c.Properties = nil // replaced, not merged, as upstream
		}
		if err := decodeCollection(attrs, &c.Collection); err != nil {
			return nil, err
		}
		if _, ok := attrs["properties"]; ok {
			if err := s.checkVocabulary("collection", c.Properties); err != nil {
				return nil, err
			}
			if err := s.checkProtected(sess, before.Properties, c.Properties); err != nil {
				return nil, err
			}
		}
		if err := checkCollectionAttrs(attrs, c.Collection); err != nil {
			return nil, err
		}
		if _, ok := attrs["manifest_text"]; ok && c.ManifestText != old {
			pdh, _ := attrs["portable_data_hash"].(string)
			if err := s.checkManifest(sess, &c.Collection, pdh); err != nil {
				return nil, err
			}
		}
		if err := s.uniqueName(&c.Collection, boolParam(params, "ensure_unique_name")); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		if c.Version, err = s.keepVersion(before, c.Collection, now); err != nil {
			return nil, err
		}
		c.ModifiedAt, c.ModifiedByUserUUID = &now, sess.user.UUID
		if err := s.putCollection(c.Collection, c); err != nil {
			return nil, err
		}
		return selectFields(params, s.collectionView(sess, a, omitManifest(params, c))), nil
	case method == http.MethodDelete && id != "":
		c, err := s.getCollection(sess, id, true)
		if err != nil {
			return nil, err
		}
		if err := s.mayChange(sess, a, c, "delete"); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		c.TrashAt, c.IsTrashed = &now, true
		return s.collectionView(sess, a, c), s.putCollection(c.Collection, c)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

// decodeCollection sets the attributes of c that attrs (a request's JSON)
// gives, as remarshal does, but hands a manifest_text string over as it
// is instead of encoding and decoding it again: a manifest can be 100 MiB.
// The request body was valid UTF-8 (checkJSONText), so the string is what
// the round trip would give.
func decodeCollection(attrs map[string]any, c *arvados.Collection) error {
	text, ok := attrs["manifest_text"].(string)
	if !ok {
		return remarshal(attrs, c)
	}
	rest := make(map[string]any, len(attrs))
	for k, v := range attrs {
		if k != "manifest_text" {
			rest[k] = v
		}
	}
	if err := remarshal(rest, c); err != nil {
		return err
	}
	c.ManifestText = text
	return nil
}

// omitManifest drops the manifest from c when the request's select leaves
// it out, so that the answer does not sign and encode it for nothing.
func omitManifest(params map[string]any, c collection) collection {
	sel, ok := params["select"].([]any)
	if !ok || len(sel) == 0 {
		return c
	}
	for _, f := range sel {
		if f == "manifest_text" {
			return c
		}
	}
	c.ManifestText = ""
	return c
}

// mayChange refuses an update or delete of a readable collection that the
// caller may not write (403, as upstream), or, for an uploader account,
// one it did not create: an uploader changes only its own uploads, even
// in a project where it was given can_write.
func (s *Server) mayChange(sess *session, a *access, c collection, what string) error {
	if !a.can(c.UUID, c.OwnerUUID, permWrite) {
		return errorf(http.StatusForbidden, "Forbidden: collection %s is not writable by %s", c.UUID, sess.user.UUID)
	}
	if sess.user.Uploader && c.createdBy() != sess.user.UUID {
		return errorf(http.StatusForbidden, "Forbidden: uploader accounts may only %s collections they created", what)
	}
	return nil
}

// getCollection finds a readable collection by UUID or PDH. A trashed one
// (or one in a trashed project) is found by UUID only with includeTrash
// (upstream: include_trash, and always for delete), else it is a 404 like
// one that never existed.
func (s *Server) getCollection(sess *session, id string, includeTrash bool) (collection, error) {
	var c collection
	a := s.access(sess)
	if uuidRe.MatchString(id) {
		if err := s.store.Get("collections", id, &c); err != nil || !a.can(c.UUID, c.OwnerUUID, permRead) ||
			(!includeTrash && (c.IsTrashed || a.st.inTrash(c.OwnerUUID))) {
			return c, errorf(http.StatusNotFound, "collection %s not found", id)
		}
		return c, nil
	}
	// By PDH, as upstream: hints stripped, then hash+size must equal the
	// collection's portable_data_hash exactly (a bare hash matches none).
	if l, err := arvados.ParseLocator(id); err == nil && l.Size >= 0 {
		want := fmt.Sprintf("%s+%d", l.Hash, l.Size)
		found := false
		err := s.store.Each("collections", func(_ string, raw []byte) bool {
			var o arvados.Collection
			if json.Unmarshal(raw, &o) == nil && o.PortableDataHash == want &&
				a.can(o.UUID, o.OwnerUUID, permRead) && !o.IsTrashed && !a.st.inTrash(o.OwnerUUID) {
				c.Collection, found = arvados.Collection{PortableDataHash: o.PortableDataHash, ManifestText: o.ManifestText}, true
				c.UUID = o.PortableDataHash
				return false
			}
			return true
		})
		if err != nil {
			return c, err
		}
		if found {
			return c, nil
		}
	}
	return c, errorf(http.StatusNotFound, "collection %s not found", id)
}
