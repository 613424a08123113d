// Package store is the agent's crash-safe journal on bbolt: one database
// file per job in the state directory, buckets for the job's metadata, its
// files (keyed in normalized manifest order), its blocks (keyed by
// sequence number) and the content hashes already stored in Keep.
//
// Every write method is one bbolt transaction (one fsync); the agent
// batches records into few calls, so 100k small files do not mean 100k
// fsyncs. A crash loses at most the batch being written. Reads that call
// back (EachFile, EachBlock) page through the journal in short read
// transactions and call back with none open, so a slow consumer never
// holds up a commit.
//
// Records are JSON, written and read by the hand-written codec of
// codec.go: reflection-based encoding/json was a third of the agent's CPU
// per small file. The bytes are exactly json.Marshal's, so there is no
// schema change: journals of older versions read, and older versions read
// ours. Reading takes a fast path for json.Marshal's layout and falls back
// to json.Unmarshal for anything else, so a record reads as json.Unmarshal
// reads it (and garbage is json's error). A write transaction appends its
// records into one buffer it never overwrites: bbolt holds the slices it
// is given until commit.
//
// A damaged file (empty, truncated, garbage pages or records) is a
// *DamagedError (ErrDamaged), never a panic or a new empty journal: Open
// checks cheaply, Check reads everything, and every transaction is
// guarded against bbolt's panics and faults on garbage pages (check.go).
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// ErrLocked means another process (a running arv-upload) holds the journal.
var ErrLocked = errors.New("journal is in use by another arv-upload process")

// Version 2: file records carry a plan generation, parts the planned
// file identity.
const schemaVersion = "2"

var (
	bMeta   = []byte("meta")
	bFiles  = []byte("files")
	bBlocks = []byte("blocks")
	bParts  = []byte("parts") // seq -> a block's parts, apart so that storing or listing blocks does not rewrite or decode them
	bHashes = []byte("hashes")
)

// fillPercent packs pages full when they split: files and blocks are
// written mostly in key order, where bbolt's default (half-full pages)
// would leave the journal twice its size.
const fillPercent = 0.9

// Journal is a bbolt-backed agent.Journal. Its transactions are guarded
// (check.go): damage is a *DamagedError, never a panic.
type Journal struct{ db guardedDB }

var _ agent.Journal = (*Journal)(nil)

// Open opens the journal at path, creating it if there is no file. It
// waits at most timeout for the file lock, then returns ErrLocked. An
// existing journal is checked cheaply (not empty, not shorter than its
// index, every bucket there; Check reads it all): damage is a
// *DamagedError, and a damaged file is never replaced by a new one.
func Open(path string, timeout time.Duration) (*Journal, error) {
	if timeout == 0 {
		timeout = 500 * time.Millisecond
	}
	info, err := os.Stat(path)
	exists := err == nil
	if exists && info.Size() == 0 {
		// bbolt would silently make a new, empty journal of it.
		if err := checkEmpty(path); err != nil {
			return nil, err
		}
	}
	db, err := open(path, timeout)
	if err != nil {
		return nil, err
	}
	if exists {
		err = db.checkOpened()
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bMeta, bFiles, bBlocks, bParts, bHashes} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bMeta).Put([]byte("schema"), []byte(schemaVersion))
		})
	}
	if err != nil {
		db.Close()
		var de *DamagedError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return &Journal{db: db}, nil
}

func seqKey(n int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return b[:]
}

// Meta returns the job metadata (zero value for a new journal).
func (j *Journal) Meta() (agent.JobMeta, error) {
	var m agent.JobMeta
	err := j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get([]byte("job")); v != nil {
			return json.Unmarshal(v, &m)
		}
		return nil
	})
	return m, err
}

// SetMeta replaces the job metadata.
func (j *Journal) SetMeta(m agent.JobMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("job"), b) })
}

// PutFiles stores file records in one transaction.
func (j *Journal) PutFiles(fs []agent.FileRecord) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFiles)
		b.FillPercent = fillPercent
		n := 0
		for i := range fs {
			n += len(fs[i].Key) + fileRecSize(&fs[i])
		}
		buf := make([]byte, 0, n) // see putBuf
		for i := range fs {
			f := &fs[i]
			var k, v []byte
			buf, k = putBuf(buf, append(buf, f.Key...))
			buf, v = putBuf(buf, appendFile(buf, f))
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// File returns the file record with key.
func (j *Journal) File(key string) (agent.FileRecord, bool, error) {
	var r agent.FileRecord
	ok := false
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bFiles).Get([]byte(key))
		if v == nil {
			return nil
		}
		ok = true
		var err error
		r, err = decodeFile(v)
		return err
	})
	r.Key = key
	return r, ok, err
}

// PruneFiles deletes, in one transaction, the file records of another
// plan generation than gen.
func (j *Journal) PruneFiles(gen int64) (int64, error) {
	var n int64
	err := j.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bFiles).Cursor()
		for k, v := c.First(); k != nil; {
			g, err := fileGen(v)
			if err != nil {
				return err
			}
			if g == gen {
				k, v = c.Next()
				continue
			}
			deleted := append([]byte(nil), k...)
			if err := c.Delete(); err != nil {
				return err
			}
			n++
			// Next after Delete may skip an item; seek past the hole.
			k, v = c.Seek(deleted)
		}
		return nil
	})
	return n, err
}

// PutBlocks stores block records in one transaction; stored ones are also
// remembered by content hash. A record with no Parts leaves the block's
// recorded parts as they are.
func (j *Journal) PutBlocks(bs []agent.BlockRecord) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		b, p, h := tx.Bucket(bBlocks), tx.Bucket(bParts), tx.Bucket(bHashes)
		b.FillPercent, p.FillPercent = fillPercent, fillPercent
		n := 0
		for _, r := range bs {
			n += 200 + partsRecSize(r.Parts) + 2*(len(r.Hash)+len(r.Locator))
		}
		buf := make([]byte, 0, n) // see putBuf
		for _, r := range bs {
			if len(r.Parts) > 0 {
				var v []byte
				buf, v = putBuf(buf, appendParts(buf, r.Parts))
				if err := p.Put(seqKey(r.Seq), v); err != nil {
					return err
				}
			}
			r.Parts = nil
			var v []byte
			buf, v = putBuf(buf, appendBlock(buf, &r))
			if err := b.Put(seqKey(r.Seq), v); err != nil {
				return err
			}
			if r.Stored {
				var k, hv []byte
				buf, k = putBuf(buf, append(buf, r.Hash...))
				buf, hv = putBuf(buf, appendHash(buf, r.Locator, r.Expiry))
				if err := h.Put(k, hv); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// putBuf returns the record appended to buf (grown is buf after the
// append) and the record alone, for a bbolt Put. bbolt keeps the key and
// value slices it is given until the transaction commits, so a transaction
// appends all its records to one buffer and never overwrites one: when
// append moves the buffer, the records put so far stay in the old array.
func putBuf(buf, grown []byte) (next, rec []byte) {
	return grown, grown[len(buf):len(grown):len(grown)]
}

// DeleteBlocks deletes block records in one transaction.
func (j *Journal) DeleteBlocks(seqs []int64) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		b, p := tx.Bucket(bBlocks), tx.Bucket(bParts)
		for _, s := range seqs {
			if err := b.Delete(seqKey(s)); err != nil {
				return err
			}
			if err := p.Delete(seqKey(s)); err != nil {
				return err
			}
		}
		return nil
	})
}

// NextSeq returns one more than the highest block sequence number.
func (j *Journal) NextSeq() (int64, error) {
	var n int64
	err := j.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bBlocks).Cursor().Last(); k != nil {
			n = int64(binary.BigEndian.Uint64(k)) + 1
		}
		return nil
	})
	return n, err
}

// Reads that call back page through their bucket: each page is read in
// one short read transaction, copied out, and the callback runs with no
// transaction open. A callback may take as long as it likes (a manifest
// streamed into a slow HTTP request): a commit that must grow the file
// remaps it under a lock every open read transaction shares, so a read
// transaction held across a callback would stall the committer, and every
// putter waiting on it, for the whole request.
const (
	pageRecords = 4096    // records per page; a file record is a few hundred bytes
	pageBytes   = 4 << 20 // and at most this much (at least one record: a huge file's ranges may be more)
)

// eachPaged calls f with the key and value of every record of bucket, in
// key order, a page at a time. Keys are immutable identifiers: a page
// starts after the last key of the one before, so each key is seen at most
// once, in order; a record written between pages may or may not be seen.
// k and v are valid only until f returns.
func (j *Journal) eachPaged(ctx context.Context, bucket []byte, f func(k, v []byte) error) error {
	var after, buf []byte
	var recs [][3]int // per record: where its key starts, where its key and its value end in buf
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf, recs = buf[:0], recs[:0]
		more := false
		err := j.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil; k, v = c.Next() {
				if len(recs) == pageRecords || len(buf) >= pageBytes {
					more = true
					break
				}
				start := len(buf)
				buf = append(append(buf, k...), v...)
				recs = append(recs, [3]int{start, start + len(k), len(buf)})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := f(buf[r[0]:r[1]], buf[r[1]:r[2]]); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		last := recs[len(recs)-1]
		after = append(after[:0], buf[last[0]:last[1]]...)
	}
}

// EachFile iterates file records in key (manifest) order, in pages (see
// eachPaged): a file record added, changed or removed during the call may
// or may not be seen.
func (j *Journal) EachFile(ctx context.Context, f func(agent.FileRecord) error) error {
	return j.eachPaged(ctx, bFiles, func(k, v []byte) error {
		r, err := decodeFile(v)
		if err != nil {
			return j.db.damaged("decode file record %q: %w", k, err)
		}
		r.Key = string(k)
		return f(r)
	})
}

// EachBlock iterates block records in sequence order, without their Parts,
// in pages (see eachPaged): a block record changed during the call (stored
// meanwhile) may be seen in either state.
func (j *Journal) EachBlock(ctx context.Context, f func(agent.BlockRecord) error) error {
	return j.eachPaged(ctx, bBlocks, func(k, v []byte) error {
		r, err := decodeBlock(v)
		if err != nil {
			return j.db.damaged("decode block record %x: %w", k, err)
		}
		return f(r)
	})
}

// Block returns block seq with its parts.
func (j *Journal) Block(seq int64) (agent.BlockRecord, error) {
	var r agent.BlockRecord
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bBlocks).Get(seqKey(seq))
		if v == nil {
			return fmt.Errorf("block %d is not in the journal", seq)
		}
		var err error
		if r, err = decodeBlock(v); err != nil {
			return err
		}
		if v := tx.Bucket(bParts).Get(seqKey(seq)); v != nil {
			var err error
			r.Parts, err = decodeParts(v)
			return err
		}
		return nil
	})
	return r, err
}

// StoredHash looks up a stored locator by content hash.
func (j *Journal) StoredHash(hash string) (string, int64, bool) {
	var loc string
	var exp int64
	ok := false
	err := j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bHashes).Get([]byte(hash)); v != nil {
			loc, exp, ok = decodeHash(v)
		}
		return nil
	})
	if err != nil {
		// Not known to be stored: the block is sent again, nothing is lost.
		return "", 0, false
	}
	return loc, exp, ok
}

// ForgetHashes drops all stored-hash knowledge.
func (j *Journal) ForgetHashes() error {
	return j.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bHashes); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bHashes)
		return err
	})
}

// Close closes the database.
func (j *Journal) Close() error { return j.db.Close() }
