// Package good uses transactions as txlint wants: callbacks run after the
// transaction that read their data has ended.
package good

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

type Store interface {
	Get(key string, out any) error
	Each(f func(k, v []byte) bool) error
}

type boltStore struct{ db *bolt.DB }

var _ Store = (*boltStore)(nil)

func (s *boltStore) Get(key string, out any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte("b")).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%s not found", key)
		}
		return json.Unmarshal(v, out)
	})
}

// Each reads a page at a time and calls f with no transaction open.
func (s *boltStore) Each(f func(k, v []byte) bool) error {
	var after []byte
	for {
		var keys, vals [][]byte
		more := false
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("b")).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil; k, v = c.Next() {
				if len(keys) == 100 {
					more = true
					break
				}
				keys = append(keys, append([]byte(nil), k...))
				vals = append(vals, append([]byte(nil), v...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if !f(keys[i], vals[i]) {
				return nil
			}
		}
		if !more {
			return nil
		}
		after = keys[len(keys)-1]
	}
}

type server struct{ store Store }

func (s *server) ownedBy(key string) bool {
	var v string
	return s.store.Get(key, &v) == nil && v != ""
}

func (s *server) list() (n int, err error) {
	err = s.store.Each(func(k, _ []byte) bool {
		if s.ownedBy(string(k)) {
			n++
		}
		return true
	})
	return n, err
}

func (s *boltStore) put(k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("b")).Put([]byte(k), b); err != nil {
			return fmt.Errorf("put %s: %w", k, err)
		}
		return nil
	})
}
