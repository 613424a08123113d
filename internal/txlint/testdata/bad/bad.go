// Package bad misuses transactions in every way txlint reports; each line
// that must be reported says so in a want comment.
package bad

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// Store is declared here, so calls through it are checked against boltStore.
type Store interface {
	Get(key string) ([]byte, error)
	Each(f func(k, v []byte) bool) error
}

type boltStore struct{ db *bolt.DB }

var _ Store = (*boltStore)(nil)

func (s *boltStore) Get(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		out = append(out, tx.Bucket([]byte("b")).Get([]byte(key))...)
		return nil
	})
	return out, err
}

// Each is the shape of issue 16: the callback runs inside the transaction.
func (s *boltStore) Each(f func(k, v []byte) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("b")).ForEach(func(k, v []byte) error {
			f(k, v) // want "f called inside a transaction"
			return nil
		})
	})
}

type server struct{ store Store }

// ownedBy reads the store, as the permission helpers do.
func (s *server) ownedBy(key string) bool {
	v, err := s.store.Get(key)
	return err == nil && len(v) > 0
}

// list calls back into the store from Each's callback: fine only because
// Each (once fixed) does not call back inside its transaction.
func (s *server) list() (n int, err error) {
	err = s.store.Each(func(k, _ []byte) bool {
		if s.ownedBy(string(k)) {
			n++
		}
		return true
	})
	return n, err
}

func nested(db *bolt.DB, s *server, st *boltStore) error {
	return db.View(func(tx *bolt.Tx) error {
		_ = db.View(func(*bolt.Tx) error { return nil }) // want "transaction opened inside a transaction" "dropped"
		if s.ownedBy("x") {                              // want "s.ownedBy, called inside a transaction, opens a transaction"
			return nil
		}
		if _, err := s.store.Get("x"); err != nil { // want "s.store.Get, called inside a transaction, opens a transaction"
			return err
		}
		_, err := st.Get("y") // want "st.Get, called inside a transaction, opens a transaction"
		return err
	})
}

func writeInside(db *bolt.DB, w io.Writer) error {
	return db.View(func(tx *bolt.Tx) error {
		_, err := w.Write(tx.Bucket([]byte("b")).Get([]byte("k"))) // want "w.Write called inside a transaction"
		return err
	})
}

func helper(f func()) { f() }

func foreignHelper(db *bolt.DB, f func()) error {
	return db.Update(func(tx *bolt.Tx) error {
		helper(f) // want "helper, called inside a transaction, calls code the package cannot see"
		return nil
	})
}

func dropped(db *bolt.DB, s *boltStore) {
	db.View(func(*bolt.Tx) error { return nil })        // want "dropped"
	_ = db.Update(func(*bolt.Tx) error { return nil })  // want "dropped"
	s.Get("k")                                          // want "dropped"
	defer db.Batch(func(*bolt.Tx) error { return nil }) // want "dropped"
}

func begin(db *bolt.DB) error {
	tx, err := db.Begin(false) // want "Begin opens a transaction"
	if err != nil {
		return err
	}
	return tx.Rollback()
}

func notLiteral(db *bolt.DB, fn func(*bolt.Tx) error) error {
	return db.View(fn) // want "as a literal"
}
