package apiserver

import (
	bolt "go.etcd.io/bbolt"
)

var _ storeSizer = (*boltStore)(nil)

// sizes counts the keys of each resource bucket in one read transaction
// (bbolt readers never block the writer) and reports the size of the data
// file as of that transaction.
func (s *boltStore) sizes() (map[string]int, int64, error) {
	out := map[string]int{}
	var size int64
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, r := range resources {
			if r == "meta" {
				continue
			}
			if b := tx.Bucket([]byte(r)); b != nil {
				out[r] = b.Stats().KeyN
			}
		}
		size = tx.Size()
		return nil
	})
	return out, size, err
}
