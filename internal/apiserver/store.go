package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound means no object has the UUID asked for.
var ErrNotFound = errors.New("not found")

// Store keeps API objects as JSON by resource and UUID. It is an interface
// so that a shared SQL database can serve several API servers later.
// Implementations are safe for concurrent use.
type Store interface {
	// Get decodes the object uuid of resource into out, or ErrNotFound.
	Get(resource, uuid string, out any) error
	// Put stores v under uuid, replacing any previous value.
	Put(resource, uuid string, v any) error
	// Delete removes uuid; deleting a missing object is not an error.
	Delete(resource, uuid string) error
	// Each calls f with the raw JSON of every object of resource, in UUID
	// order, until f returns false. It reads a page of objects at a time
	// and calls f with no transaction open, so f may use the Store; an
	// object written meanwhile may or may not be seen, and each UUID is
	// seen at most once. raw is f's to keep.
	Each(resource string, f func(uuid string, raw []byte) bool) error
	// Meta reads and writes small named values (secrets, schema version).
	Meta(key string) ([]byte, error)
	SetMeta(key string, value []byte) error
	Close() error
}

const schemaVersion = "1"

var resources = []string{"users", "api_client_authorizations", "collections", "groups", "links", "logs", "keep_services", "meta"}

// boltStore is the embedded default Store: one bbolt file, one bucket per
// resource.
type boltStore struct{ db *bolt.DB }

var _ Store = (*boltStore)(nil)

func openBoltStore(path string) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: another arv-server is using this data directory", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, r := range resources {
			if _, err := tx.CreateBucketIfNotExists([]byte(r)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if v := meta.Get([]byte("schema")); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("store schema version %s, this arv-server understands %s", v, schemaVersion)
		}
		return meta.Put([]byte("schema"), []byte(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

func (s *boltStore) Get(resource, uuid string, out any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(resource)).Get([]byte(uuid))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, out)
	})
}

func (s *boltStore) Put(resource, uuid string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(resource)).Put([]byte(uuid), b)
	})
}

func (s *boltStore) Delete(resource, uuid string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(resource)).Delete([]byte(uuid))
	})
}

// Each pages: a callback that reads the store (a permission check) inside
// the read transaction would nest a second one, and bbolt deadlocks on a
// nested read transaction as soon as a writer must remap the growing file.
// A page is bounded in objects and in bytes, since logs can be big.
const (
	pageObjects = 1000
	pageBytes   = 1 << 20 // at least one object per page, however big
)

func (s *boltStore) Each(resource string, f func(uuid string, raw []byte) bool) error {
	type object struct {
		uuid string
		raw  []byte
	}
	var after []byte
	for {
		var page []object
		more, size := false, 0
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte(resource)).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil; k, v = c.Next() {
				if len(page) == pageObjects || size >= pageBytes {
					more = true
					break
				}
				page = append(page, object{string(k), append([]byte(nil), v...)})
				size += len(v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", resource, err)
		}
		for _, o := range page {
			if !f(o.uuid, o.raw) {
				return nil
			}
		}
		if !more {
			return nil
		}
		after = []byte(page[len(page)-1].uuid)
	}
}

func (s *boltStore) Meta(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

func (s *boltStore) SetMeta(key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte(key), value)
	})
}

func (s *boltStore) Close() error { return s.db.Close() }
