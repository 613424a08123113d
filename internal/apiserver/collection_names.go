package apiserver

import (
	"encoding/json"
	"fmt"

	"github.com/arv-upload/arv-upload/arvados"
)

// nameIndex holds the (owner, name) of every named, untrashed, current
// collection, so that a create or a rename checks its name without reading
// every stored collection: a scan decoded (or at least copied) each one's
// manifest, 437 KB for 20,000 files, on every create. It is built from the
// store at Open and updated after each write of a collection
// (putCollection); s.mu guards it. Like the permission graph, it assumes
// that this server is the store's only writer. Memory: a map entry per
// named collection (its UUID, owner and name), not its manifest.
type nameIndex struct {
	byUUID map[string]string              // collection UUID -> its key
	byKey  map[string]map[string]struct{} // key -> UUIDs of collections with that key
}

// collectionNaming is what the index reads of a stored collection.
type collectionNaming struct {
	UUID               string `json:"uuid"`
	OwnerUUID          string `json:"owner_uuid"`
	Name               string `json:"name"`
	IsTrashed          bool   `json:"is_trashed"`
	CurrentVersionUUID string `json:"current_version_uuid"`
}

// nameKey is the index key of a collection, "" for one whose name takes
// no place: unnamed, trashed, or a past version. An owner is a UUID, so
// the NUL between cannot be part of it.
func nameKey(c collectionNaming) string {
	if c.Name == "" || c.IsTrashed || (c.CurrentVersionUUID != "" && c.CurrentVersionUUID != c.UUID) {
		return ""
	}
	return c.OwnerUUID + "\x00" + c.Name
}

func namingOf(c arvados.Collection) collectionNaming {
	return collectionNaming{UUID: c.UUID, OwnerUUID: c.OwnerUUID, Name: c.Name, IsTrashed: c.IsTrashed, CurrentVersionUUID: c.CurrentVersionUUID}
}

// set records that collection uuid now has key ("" removes it).
func (ix *nameIndex) set(uuid, key string) {
	if ix.byUUID == nil {
		ix.byUUID, ix.byKey = map[string]string{}, map[string]map[string]struct{}{}
	}
	if old, ok := ix.byUUID[uuid]; ok {
		if old == key {
			return
		}
		delete(ix.byKey[old], uuid)
		if len(ix.byKey[old]) == 0 {
			delete(ix.byKey, old)
		}
		delete(ix.byUUID, uuid)
	}
	if key == "" {
		return
	}
	ix.byUUID[uuid] = key
	if ix.byKey[key] == nil {
		ix.byKey[key] = map[string]struct{}{}
	}
	ix.byKey[key][uuid] = struct{}{}
}

// taken reports whether a collection other than uuid has key.
func (ix *nameIndex) taken(key, uuid string) bool {
	for other := range ix.byKey[key] {
		if other != uuid {
			return true
		}
	}
	return false
}

// loadCollectionNames builds the index from the store (Open).
func (s *Server) loadCollectionNames() error {
	var ix nameIndex
	var bad error
	err := s.store.Each("collections", func(uuid string, raw []byte) bool {
		var c collectionNaming
		if err := json.Unmarshal(raw, &c); err != nil {
			bad = fmt.Errorf("collection %s: %w", uuid, err)
			return false
		}
		ix.set(uuid, nameKey(c))
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return fmt.Errorf("read the names of the collections: %w", err)
	}
	s.names = ix
	return nil
}

// putCollection stores v, the collection c as stored, and keeps the name
// index up to date. The caller holds s.mu.
func (s *Server) putCollection(c arvados.Collection, v any) error {
	if err := s.store.Put("collections", c.UUID, v); err != nil {
		return err
	}
	s.names.set(c.UUID, nameKey(namingOf(c)))
	return nil
}
