package apiserver

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/arv-upload/arv-upload/arvados"
)

// checkJSONText refuses JSON that Go's decoder would silently change: bytes
// that are not UTF-8, and \u escapes of lone UTF-16 surrogates (what Python
// makes of a file name that is not UTF-8), both of which decode to U+FFFD.
// The Arvados controller decodes that way, so a manifest naming such a file
// would be stored differently from what was sent and its portable data hash
// would not match the client's (docs/API.md, deviations).
func checkJSONText(what string, b []byte) error {
	bad := !utf8.Valid(b)
	// In JSON a backslash only ever appears inside a string, as an escape.
	for i := 0; !bad && i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			continue
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character (it may be a backslash)
			continue
		}
		r, ok := hex4(b, i+2)
		switch {
		case !ok:
			// malformed: json.Unmarshal reports it
		case r >= 0xd800 && r < 0xdc00:
			next, ok := hex4(b, i+8)
			bad = i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || !ok || next < 0xdc00 || next >= 0xe000
			i += 11 // past the pair
		case r >= 0xdc00 && r < 0xe000:
			bad = true
		default:
			i += 5
		}
	}
	if bad {
		return errorf(http.StatusUnprocessableEntity, "%s is not valid UTF-8 (or escapes a lone UTF-16 surrogate): "+
			"Arvados would store U+FFFD in place of those bytes, changing names and the manifest's portable data hash; "+
			"rename the files (or the object) to UTF-8 names and send it again", what)
	}
	return nil
}

// hex4 decodes the 4 hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// checkCollectionAttrs validates the attributes a collection create or
// update sets (a), as decoded into c.
func checkCollectionAttrs(a map[string]any, c arvados.Collection) error {
	if _, ok := a["name"]; ok && strings.IndexByte(c.Name, 0) >= 0 {
		return errorf(http.StatusUnprocessableEntity, "collection name %q contains a NUL character; choose a name without it", c.Name)
	}
	if _, ok := a["replication_desired"]; ok && c.ReplicationDesired != nil && *c.ReplicationDesired < 1 {
		return errorf(http.StatusUnprocessableEntity, "replication_desired %d is below 1; send at least 1, or null for the cluster default", *c.ReplicationDesired)
	}
	return nil
}

// checkOwner refuses an owner_uuid the caller may not put an object in:
// one that is not a UUID at all with 403, as upstream ("must be set to
// User or Group"); one the caller may not write to with 403; one that
// names no user here (nor, with projects, a group) with 422 "'<uuid>' not
// found", as upstream; a group that is not a project with 403, as
// upstream ("must be a project"); and a project in the trash with 422.
func (s *Server) checkOwner(sess *session, owner string, projects bool) error {
	if !uuidRe.MatchString(owner) {
		return errorf(http.StatusForbidden, "Forbidden: owner_uuid %q is not a user or project UUID", owner)
	}
	a := s.access(sess)
	if !a.canNode(owner, permWrite) {
		return errorf(http.StatusForbidden, "Forbidden: cannot write to owner %s: %s has no can_write there (a permission link from someone who can manage it gives it)", owner, sess.user.UUID)
	}
	n, ok := a.st.nodes[owner]
	if !ok || (n.group && !projects) {
		return errorf(http.StatusUnprocessableEntity, "owner_uuid '%s' not found", owner)
	}
	if n.group && n.class != "project" {
		return errorf(http.StatusForbidden, "Forbidden: owner_uuid %s is a %s group; objects can be owned by users and projects only", owner, n.class)
	}
	if n.group && (trashedAt(n.trashAt, time.Now()) || a.st.inTrash(n.owner)) {
		return errorf(http.StatusUnprocessableEntity, "project %s is in the trash; untrash it (groups/%s/untrash) or choose another owner", owner, owner)
	}
	return nil
}
