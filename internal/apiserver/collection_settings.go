package apiserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// defaultPreserveVersionIfIdle is upstream's Collections.PreserveVersionIfIdle.
const defaultPreserveVersionIfIdle = 10 * time.Second

// A ManagedProperty is a property the server sets on every collection it
// creates: Value, or with Function "original_owner" the UUID of the user
// who owns it. A Protected one may not be changed by a non-admin (403);
// an unprotected one takes what an update sends.
type ManagedProperty struct {
	Value     any    `json:"Value,omitempty"`
	Function  string `json:"Function,omitempty"`
	Protected bool   `json:"Protected,omitempty"`
}

// signing reports whether locators are signed (Collections.BlobSigning).
func (s *Server) signing() bool { return !s.opts.DisableBlobSigning }

// checkVocabulary refuses property keys a strict vocabulary does not list.
func (s *Server) checkVocabulary(what string, props map[string]any) error {
	if len(s.opts.Vocabulary) == 0 {
		return nil
	}
	for k := range props {
		if !slices.Contains(s.opts.Vocabulary, k) {
			return errorf(http.StatusBadRequest, "invalid %s properties: key %q is not in the vocabulary", what, k)
		}
	}
	return nil
}

// setManagedProperties sets the managed properties of a new collection.
func (s *Server) setManagedProperties(c *arvados.Collection) {
	if len(s.opts.ManagedProperties) == 0 {
		return
	}
	if c.Properties == nil {
		c.Properties = map[string]any{}
	}
	for k, mp := range s.opts.ManagedProperties {
		switch mp.Function {
		case "original_owner":
			c.Properties[k] = c.OwnerUUID
		default:
			c.Properties[k] = mp.Value
		}
	}
}

// checkProtected refuses a non-admin update that changes a protected
// managed property.
func (s *Server) checkProtected(sess *session, old, upd map[string]any) error {
	if sess.user.IsAdmin {
		return nil
	}
	for k, mp := range s.opts.ManagedProperties {
		if mp.Protected && !reflect.DeepEqual(old[k], upd[k]) {
			return errorf(http.StatusForbidden, "Forbidden: protected property %q may only be changed by an admin", k)
		}
	}
	return nil
}

// keepVersion stores the state of a collection before an update as a past
// version (a new UUID whose current_version_uuid is the collection's) when
// versioning is on, the update changes the collection, and the previous
// update is older than PreserveVersionIfIdle (or preserve_version was set).
// It returns the version number the updated collection gets.
func (s *Server) keepVersion(before, after arvados.Collection, now time.Time) (int, error) {
	if s.opts.DisableCollectionVersioning || !versionChanged(before, after) {
		return before.Version, nil
	}
	idle := s.opts.PreserveVersionIfIdle
	last := before.ModifiedAt
	if !before.PreserveVersion && (idle < 0 || last == nil || now.Sub(*last) <= idle) {
		return before.Version, nil
	}
	past := before
	past.Common.UUID = s.uuid("4zz18")
	past.CurrentVersionUUID = before.UUID
	past.PreserveVersion = false
	if err := s.putCollection(past, past); err != nil {
		return 0, err
	}
	return before.Version + 1, nil
}

// versionChanged reports whether an update changes what a version records.
// The strings are compared as they are (they came from JSON, so they are
// valid UTF-8 and equal exactly when their JSON is): encoding a big
// manifest twice was most of a small update's time.
func versionChanged(a, b arvados.Collection) bool {
	if a.Name != b.Name || a.Description != b.Description || a.ManifestText != b.ManifestText ||
		a.OwnerUUID != b.OwnerUUID || a.IsTrashed != b.IsTrashed {
		return true
	}
	ap, _ := json.Marshal(a.Properties)
	bp, _ := json.Marshal(b.Properties)
	return string(ap) != string(bp)
}

// isPastVersion reports whether a stored collection is a past version.
func isPastVersion(c arvados.Collection) bool {
	return c.CurrentVersionUUID != "" && c.CurrentVersionUUID != c.UUID
}
