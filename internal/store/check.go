package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// ErrDamaged means a journal file is damaged (truncated, overwritten,
// garbage records): nothing in it can be trusted. What the job stored in
// Keep is not affected; the journal must be rebuilt. It is the agent's
// agent.ErrJournalDamaged.
var ErrDamaged = agent.ErrJournalDamaged

// DamagedError says which journal is damaged and how. It matches
// ErrDamaged with errors.Is.
type DamagedError struct {
	Path string
	Err  error // what was found
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("journal %s is damaged: %v", e.Path, e.Err)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// guardedDB is the bbolt handle of a journal with every transaction
// guarded. bbolt trusts its file: a garbage page makes it panic ("page
// expected to be: 891, but self identifies as ...") or touch memory
// outside the file it maps. Inside View and Update such a panic, or such
// a fault, becomes a *DamagedError, and so does a record that does not
// decode; the process never dies in bbolt with a stack dump.
//
// After such a panic bbolt's own state cannot be trusted either (a write
// transaction whose rollback panicked keeps bbolt's writer lock), so the
// handle is poisoned: every later call returns the same error without
// entering bbolt, writers wait on a lock of ours rather than bbolt's, and
// Close only lets go of the file.
type guardedDB struct {
	*bolt.DB
	path  string
	file  *os.File // the file bbolt opened, locked
	state *guardState
}

type guardState struct {
	writer   sync.Mutex
	poisoned atomic.Pointer[DamagedError]
}

func (d guardedDB) View(fn func(*bolt.Tx) error) (err error) {
	if de := d.state.poisoned.Load(); de != nil {
		return de
	}
	defer d.guard(&err)()
	return d.classify(d.DB.View(fn))
}

func (d guardedDB) Update(fn func(*bolt.Tx) error) (err error) {
	d.state.writer.Lock()
	defer d.state.writer.Unlock() // after guard: a waiting writer sees the poison
	if de := d.state.poisoned.Load(); de != nil {
		return de
	}
	defer d.guard(&err)()
	return d.classify(d.DB.Update(fn))
}

// Close closes the database; a poisoned one (see guardedDB) only gives
// up its lock and file, since bbolt's Close could wait forever for its
// writer lock. The memory map stays until the process exits.
func (d guardedDB) Close() error {
	if d.state.poisoned.Load() == nil {
		return d.DB.Close()
	}
	syscall.Flock(int(d.file.Fd()), syscall.LOCK_UN)
	return d.file.Close()
}

func (d guardedDB) damaged(format string, args ...any) error {
	return &DamagedError{Path: d.path, Err: fmt.Errorf(format, args...)}
}

// classify marks a record that does not decode as damage. The callbacks
// the agent runs inside a transaction decode nothing, so a decode error
// can only come from a journal record.
func (d guardedDB) classify(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) {
		var de *DamagedError
		if errors.As(err, &de) {
			return err
		}
		return &DamagedError{Path: d.path, Err: fmt.Errorf("a record does not decode: %w", err)}
	}
	return err
}

// guard makes a fault on the memory map a panic (it is fatal by default)
// for the calling goroutine, and returns the function to defer that
// turns a panic raised by bbolt or this package into a *DamagedError in
// *err. Other panics (bugs in a caller's callback) go on.
func (d guardedDB) guard(err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		r := recover()
		if r == nil {
			return
		}
		if !journalPanic(r) {
			panic(r)
		}
		de := &DamagedError{Path: d.path, Err: fmt.Errorf("bbolt: %v", r)}
		if d.state != nil && !d.state.poisoned.CompareAndSwap(nil, de) {
			de = d.state.poisoned.Load()
		}
		*err = de
	}
}

// journalPanic reports whether a recovered panic comes from reading the
// journal: a fault on the memory map (a runtime error with an address,
// which SetPanicOnFault gives), or a panic whose innermost frame of
// non-standard code is bbolt or this package.
func journalPanic(r any) bool {
	if e, ok := r.(interface{ Addr() uintptr }); ok && e.Addr() != 0 {
		return true
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case !panicking, standardLibrary(f.Function):
			// the guard's own frames, or the runtime and standard
			// library code that the culprit called
		default:
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt") || strings.HasPrefix(f.Function, thisPackage+".")
		}
		if !more {
			return false
		}
	}
}

const thisPackage = "github.com/arv-upload/arv-upload/internal/store"

// standardLibrary reports whether a function (as runtime.Frame names it,
// "import/path.Func") belongs to the standard library or the runtime:
// the first element of its import path has no dot (a module path's
// has), and it is not package main.
func standardLibrary(fn string) bool {
	first := fn
	if i := strings.IndexByte(fn, '/'); i >= 0 {
		first = fn[:i]
	} else if i := strings.IndexByte(fn, '.'); i >= 0 {
		first = fn[:i]
	}
	return !strings.Contains(first, ".") && first != "main"
}

// initialMmapSize is the address space bbolt maps a journal into at
// first (on 64-bit systems; the file does not grow, and only the pages
// used are memory). Growing from bbolt's default 32 KiB, a journal was
// mapped again at every doubling, each time faulting its pages in anew
// and holding up readers: a tenth of planning 20,000 files.
const initialMmapSize = (1 << 30) * (strconv.IntSize / 64)

// open opens the bbolt file at path. A panic or a fault inside bbolt (on
// a garbage free list, say) is a *DamagedError; the file, and with it
// the lock, is then closed.
func open(path string, timeout time.Duration) (guardedDB, error) {
	d := guardedDB{path: path, state: &guardState{}}
	var file *os.File
	err := func() (err error) {
		defer d.guard(&err)()
		d.DB, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, InitialMmapSize: initialMmapSize,
			OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, mode)
				file = f
				return f, err
			}})
		return err
	}()
	if err == nil {
		d.file = file
		return d, nil
	}
	if d.DB == nil && file != nil {
		// bbolt panicked before it could close the file. Its memory map
		// of the file stays (we cannot reach it) and would keep the lock
		// held, so the lock is released explicitly.
		syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
		file.Close()
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return d, ErrLocked
	case errors.Is(err, ErrDamaged):
		return d, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return d, d.damaged("%w", err)
	}
	return d, fmt.Errorf("open journal %s: %w", path, err)
}

// checkEmpty tells a journal that is empty (damaged) from one that
// another process is creating: bbolt creates the file, then locks and
// fills it. It returns ErrLocked while another process holds it, nil if
// it is not empty any more.
func checkEmpty(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open journal %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	} else if err != nil {
		return fmt.Errorf("lock journal %s: %w", path, err)
	}
	if info, err := f.Stat(); err == nil && info.Size() > 0 {
		return nil
	}
	return &DamagedError{Path: path, Err: errors.New("the file is empty")}
}

// checkOpened is the cheap check of an existing journal, done by Open:
// the file is as long as bbolt's index says, every bucket is there, the
// schema is known.
func (d guardedDB) checkOpened() error {
	info, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("open journal %s: %w", d.path, err)
	}
	return d.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); info.Size() < need {
			return d.damaged("the file is %d bytes, shorter than the %d bytes its index needs (truncated)", info.Size(), need)
		}
		m := tx.Bucket(bMeta)
		if m == nil {
			return d.damaged("it has no meta bucket")
		}
		v := m.Get([]byte("schema"))
		if v == nil {
			return d.damaged("it records no schema version")
		}
		if string(v) != schemaVersion {
			return fmt.Errorf("journal schema %s; this arv-upload understands %s", v, schemaVersion)
		}
		for _, b := range [][]byte{bFiles, bBlocks, bParts, bHashes} {
			if tx.Bucket(b) == nil {
				return d.damaged("it has no %s bucket", b)
			}
		}
		return nil
	})
}

// validJSON checks the syntax of a record only: a file or a part is one
// per file, and decoding a million of them would take seconds. The
// agent's reads decode them and report a *DamagedError too.
func validJSON(_, v []byte) error {
	if !json.Valid(v) {
		return errors.New("not JSON")
	}
	return nil
}

// Check reads the whole journal: every record of every bucket, in key
// order, decoded; then bbolt's own consistency check (every page
// reachable once or free). It returns a *DamagedError for the first
// damage found. It costs one pass over the file, so it is for the start
// of a run, not for status.
func (j *Journal) Check(ctx context.Context) error {
	d := j.db
	err := d.View(func(tx *bolt.Tx) error {
		decoders := map[string]func(k, v []byte) error{
			string(bMeta): func(k, v []byte) error {
				if string(k) == "job" {
					var m agent.JobMeta
					return json.Unmarshal(v, &m)
				}
				return nil
			},
			string(bFiles): func(k, v []byte) error {
				var f agent.FileRecord
				if parseFile(v, &f, false) { // the codec's fast path: valid
					return nil
				}
				return validJSON(k, v)
			},
			string(bBlocks): func(k, v []byte) error {
				if len(k) != 8 {
					return fmt.Errorf("block key %x", k)
				}
				_, err := decodeBlock(v)
				return err
			},
			string(bParts): func(k, v []byte) error {
				if len(k) != 8 {
					return fmt.Errorf("parts key %x", k)
				}
				return validJSON(k, v)
			},
			string(bHashes): func(k, v []byte) error {
				var pair [2]json.RawMessage
				var loc string
				var exp int64
				if err := json.Unmarshal(v, &pair); err != nil {
					return err
				}
				if err := json.Unmarshal(pair[0], &loc); err != nil {
					return err
				}
				return json.Unmarshal(pair[1], &exp)
			},
		}
		for name, decode := range decoders {
			b := tx.Bucket([]byte(name))
			if b == nil {
				return d.damaged("it has no %s bucket", name)
			}
			var prev []byte
			n := 0
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if n++; n%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					return d.damaged("bucket %s: keys out of order", name)
				}
				prev = k
				if v == nil {
					return d.damaged("bucket %s: unexpected nested bucket", name)
				}
				if err := decode(k, v); err != nil {
					return d.damaged("bucket %s: record %q: %w", name, k, err)
				}
			}
		}
		// Every page the walk reached passed bbolt's page check, so its
		// own check (which runs in a goroutine of its own, where a fault
		// would be fatal) reads only sane pages.
		var first error
		for err := range tx.Check() { // drained: the check goroutine reads tx until it ends
			if first == nil {
				first = d.damaged("bbolt check: %w", err)
			}
		}
		return first
	})
	return err
}
