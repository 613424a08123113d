package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AuditSink receives audit records. CreateLog posts one `logs` record with
// the proxy's own service token; a nil error means the API server stored it.
// It must be safe for concurrent use.
type AuditSink interface {
	CreateLog(ctx context.Context, attrs map[string]any) error
}

// AuditRecord is what the proxy remembers about each stored block.
type AuditRecord struct {
	ID         string    `json:"record_id"` // random; lets the API side detect a duplicate delivery
	Locator    string    `json:"locator"`   // hash+size, no hints
	UserUUID   string    `json:"user_uuid"`
	Replicas   int       `json:"replicas"`
	ClientAddr string    `json:"client_address"`
	RequestID  string    `json:"request_id"`
	Time       time.Time `json:"time"`
}

// logAttrs is the `logs` create body for r (PROTOCOL 9.6).
func (r AuditRecord) logAttrs() map[string]any {
	return map[string]any{
		"event_type":  "block_put",
		"object_uuid": r.Locator,
		"event_at":    r.Time.UTC().Format(time.RFC3339Nano),
		"summary":     fmt.Sprintf("block %s stored by %s via keep proxy", r.Locator, r.UserUUID),
		"properties": map[string]any{
			"record_id":      r.ID,
			"locator":        r.Locator,
			"user_uuid":      r.UserUUID,
			"replicas":       r.Replicas,
			"client_address": r.ClientAddr,
			"request_id":     r.RequestID,
			"time":           r.Time.UTC().Format(time.RFC3339Nano),
		},
	}
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
)

const spoolSchemaVersion = "1"

// Spool is the durable audit queue: a bbolt file whose "records" bucket maps
// a big-endian sequence number to a JSON AuditRecord. Append returns only
// after the record is committed (fsynced); concurrent appends share one
// commit through bolt's Batch. Delivery reads in sequence order and deletes
// a record only after the sink accepted it.
type Spool struct {
	db     *bolt.DB
	wake   chan struct{}
	depth  atomic.Int64 // records in the bucket; counted once at open, then kept up to date
	depthF func(int)
}

// OpenSpool opens (creating if needed) the spool in dir.
func OpenSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "audit-spool.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open audit spool: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := m.Get([]byte("schema")); v != nil && string(v) != spoolSchemaVersion {
			return fmt.Errorf("schema version %q, want %q", v, spoolSchemaVersion)
		}
		return m.Put([]byte("schema"), []byte(spoolSchemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init audit spool: %w", err)
	}
	sp := &Spool{db: db, wake: make(chan struct{}, 1), depthF: func(int) {}}
	_ = db.View(func(tx *bolt.Tx) error {
		sp.depth.Store(int64(tx.Bucket(bucketRecords).Stats().KeyN))
		return nil
	})
	return sp, nil
}

// Close closes the spool file.
func (s *Spool) Close() error { return s.db.Close() }

// newRecordID returns a random 128-bit hex id.
func newRecordID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Append stores r durably. r.ID is filled in when empty.
func (s *Spool) Append(ctx context.Context, r AuditRecord) error {
	if r.ID == "" {
		r.ID = newRecordID()
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		return b.Put(k[:], v)
	})
	if err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}
	s.depthF(int(s.depth.Add(1)))
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Depth returns the number of undelivered records.
func (s *Spool) Depth() int { return int(s.depth.Load()) }

type spooled struct {
	key []byte
	rec AuditRecord
}

// peek returns up to n of the oldest records.
func (s *Spool) peek(n int) ([]spooled, error) {
	var out []spooled
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode audit record %x: %w", k, err)
			}
			out = append(out, spooled{key: append([]byte(nil), k...), rec: r})
		}
		return nil
	})
	return out, err
}

func (s *Spool) remove(key []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).Delete(key) })
	if err != nil {
		return fmt.Errorf("remove delivered audit record: %w", err)
	}
	s.depthF(int(s.depth.Add(-1)))
	return nil
}

// deliverer posts spooled records to the sink until ctx ends.
type deliverer struct {
	spool      *Spool
	sink       AuditSink
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
	delivered  func()
	failed     func()
	kick       <-chan struct{} // a new audit token: retry at once
	refused    func(err error) // the sink refused the token (401/403); logs it, rate-limited
	accepted   func()          // a record was accepted
}

// run delivers records in order. On a sink error it waits (exponential
// backoff with jitter) and retries the same record, so nothing is skipped.
func (d *deliverer) run(ctx context.Context) {
	backoff := d.minBackoff
	for {
		batch, err := d.spool.peek(64)
		if err != nil {
			d.log.Error("read audit spool", "err", err)
		}
		progressed := false
		for _, it := range batch {
			if ctx.Err() != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = d.sink.CreateLog(cctx, it.rec.logAttrs())
			cancel()
			if err != nil {
				d.failed()
				if tokenRefused(err) {
					d.refused(err) // logged at most once per interval, not per attempt
				} else {
					d.log.Warn("deliver audit record", "record_id", it.rec.ID, "locator", it.rec.Locator, "err", err, "retry_in", backoff)
				}
				break
			}
			d.delivered()
			d.accepted()
			progressed = true
			if err = d.spool.remove(it.key); err != nil {
				d.log.Error("remove audit record", "record_id", it.rec.ID, "err", err)
				break
			}
		}
		if err != nil {
			// Back off; new appends do not cut the wait short, a new
			// audit token does.
			t := time.NewTimer(jitter(backoff))
			backoff = min(backoff*2, d.maxBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-d.kick:
				t.Stop()
				backoff = d.minBackoff
			}
			continue
		}
		backoff = d.minBackoff
		if progressed && len(batch) == 64 {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-d.spool.wake:
		case <-d.kick:
		}
	}
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	half := d / 2
	return half + time.Duration(binary.BigEndian.Uint64(b[:])%uint64(half))
}
