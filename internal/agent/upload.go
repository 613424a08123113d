package agent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"golang.org/x/sync/errgroup"
)

type readBlock struct {
	rec BlockRecord
	buf []byte
}

func (u *Uploader) threads() int {
	if t := u.meta.Options.Threads; t > 0 {
		return t
	}
	return 2
}

// errChanged is what readParts returns for a file that is not the one
// planned any more: the block is skipped and the file planned again.
type errChanged struct{ path string }

func (e errChanged) Error() string { return e.path }

// upload sends every block not yet stored. Memory: at most threads+1
// buffers of up to 64 MiB exist at once (the pool), whatever the dataset.
// Blocks whose files changed since they were planned are skipped; the
// error then wraps ErrFileChanged and names them, after every other block
// was sent.
func (u *Uploader) upload(ctx context.Context) error {
	var todo []int64
	stored := map[int64]bool{}
	var storedBytes int64
	if err := u.cfg.Journal.EachBlock(ctx, func(b BlockRecord) error {
		if b.Stored {
			stored[b.Seq] = true
			storedBytes += b.Size
		} else {
			todo = append(todo, b.Seq)
		}
		return nil
	}); err != nil {
		return err
	}
	files := newFilesDone(u.cfg.Journal, stored)
	filesDone, err := files.count(ctx)
	if err != nil {
		return err
	}
	u.report(func(p *Progress) {
		p.Phase = "uploading"
		p.FilesTotal, p.BytesTotal, p.BlocksTotal = u.meta.FilesTotal, u.meta.BytesTotal, u.meta.BlocksTotal
		p.BlocksStored, p.BytesDone, p.FilesDone = int64(len(stored)), storedBytes, filesDone
	})
	threads := u.threads()
	margin := u.signatureMargin(ctx)
	pool := make(chan []byte, threads+1)
	var taken [][]byte
	defer func() { // after every stage has stopped (g.Wait below)
		for _, b := range taken {
			putBlockBuffer(b)
		}
	}()
	for i := 0; i < threads+1; i++ {
		pool <- nil // allocated on first use
	}
	toPut := make(chan readBlock)
	done := make(chan BlockRecord, threads)
	g, gctx := errgroup.WithContext(ctx)
	gctx, cancel := context.WithCancel(gctx)
	defer cancel()
	var changed []string // written by the reader only; read after g.Wait

	g.Go(func() error { // reader
		defer close(toPut)
		for _, seq := range todo {
			rec, err := u.cfg.Journal.Block(seq)
			if err != nil {
				return err
			}
			var buf []byte
			select {
			case buf = <-pool:
			case <-gctx.Done():
				return gctx.Err()
			}
			if buf == nil {
				buf = getBlockBuffer()
				taken = append(taken, buf)
			}
			buf = buf[:rec.Size]
			if err := u.readParts(rec, buf); err != nil {
				pool <- buf
				var ce errChanged
				if errors.As(err, &ce) {
					changed = append(changed, ce.path)
					continue
				}
				return err
			}
			select {
			case toPut <- readBlock{rec, buf}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for i := 0; i < threads; i++ {
		g.Go(func() error { // uploader: hash (so hashing runs on threads cores), then PUT unless stored
			for rb := range toPut {
				sum := md5.Sum(rb.buf)
				rb.rec.Hash = hex.EncodeToString(sum[:])
				// A stored block is reused only when it is this block: same
				// hash and same size (the journal keys stored blocks by hash).
				if loc, exp, ok := u.cfg.Journal.StoredHash(rb.rec.Hash); ok && fresh(loc, exp, time.Now().Add(margin)) && sameSize(loc, rb.rec.Size) {
					rb.rec.Locator, rb.rec.Expiry, rb.rec.Stored = loc, exp, true
					pool <- rb.buf
					select {
					case done <- rb.rec:
					case <-gctx.Done():
						return gctx.Err()
					}
					continue
				}
				loc, replicas, err := u.cfg.Keep.PutBlock(gctx, rb.buf, rb.rec.Hash)
				if err != nil {
					return fmt.Errorf("upload block %d (%s): %w", rb.rec.Seq, rb.rec.Parts[0].Path, err)
				}
				u.report(func(p *Progress) { p.BytesSent += int64(len(rb.buf)) })
				pool <- rb.buf
				rb.rec.Locator, rb.rec.Replicas, rb.rec.Stored = loc, replicas, true
				rb.rec.Expiry = arvados.SignatureExpiry(loc).Unix()
				select {
				case done <- rb.rec:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	go func() { g.Wait(); close(done) }()

	stopCheckpoints := u.startCheckpoints(gctx)
	defer stopCheckpoints()

	// Committer: journal stored blocks in batches; a block is recorded
	// only after Keep confirmed it.
	var pending []BlockRecord
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		recs := make([]BlockRecord, len(pending))
		for i, b := range pending {
			recs[i] = b
			recs[i].Parts = nil // recorded at plan time; not rewritten
		}
		if err := u.cfg.Journal.PutBlocks(recs); err != nil {
			return fmt.Errorf("write journal (is the disk full?): %w", err)
		}
		for _, b := range pending {
			n, err := files.blockStored(b)
			if err != nil {
				return err
			}
			u.report(func(p *Progress) { p.BlocksStored++; p.BytesDone += b.Size; p.FilesDone += n })
		}
		pending = pending[:0]
		return nil
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var commitErr error
loop:
	for {
		select {
		case b, ok := <-done:
			if !ok {
				break loop
			}
			pending = append(pending, b)
			if len(pending) >= 64 {
				if commitErr = flush(); commitErr != nil {
					break loop
				}
			}
		case <-tick.C:
			if commitErr = flush(); commitErr != nil {
				break loop
			}
		}
	}
	if commitErr != nil {
		cancel()
		for range done { // let the stages drain and stop
		}
	}
	// Whatever happened, what Keep confirmed is journaled.
	if err := flush(); err != nil && commitErr == nil {
		commitErr = err
	}
	stopCheckpoints()
	// The stages' error (if any) is the cause, unless the committer failed
	// first and cancelled them.
	if err := g.Wait(); commitErr != nil {
		return commitErr
	} else if err != nil {
		return err
	}
	if len(changed) > 0 {
		// A file of several blocks is met once per block: name it once.
		slices.Sort(changed)
		changed = slices.Compact(changed)
		if u.changedFiles == nil {
			u.changedFiles = map[string]bool{}
		}
		for _, p := range changed {
			if len(u.changedFiles) < 100000 { // a bound, not a list to keep
				u.changedFiles[p] = true
			}
		}
		n := int64(len(u.changedFiles))
		u.report(func(p *Progress) { p.FilesChanged = n })
		list := changed
		if len(list) > 5 {
			list = append(list[:5:5], fmt.Sprintf("and %d more", len(changed)-5))
		}
		return fmt.Errorf("%w: %d file(s): %s (if they are still being written, run `arv-upload resume` when they are complete)",
			ErrFileChanged, len(changed), strings.Join(list, ", "))
	}
	return nil
}

// readParts fills buf with the block's parts. A part whose file is not the
// one planned any more (size, mtime, ctime or inode differ, before or
// after the read), or has vanished or shrunk, gives errChanged: two
// versions of a file are never mixed into one collection.
func (u *Uploader) readParts(rec BlockRecord, buf []byte) error {
	off := 0
	for _, part := range rec.Parts {
		if err := u.readPart(part, buf[off:off+int(part.Length)]); err != nil {
			return err
		}
		off += int(part.Length)
	}
	return nil
}

// readHook, when set (tests only), sees every file path the reader opens.
var readHook func(path string)

func (u *Uploader) readPart(part Part, buf []byte) error {
	p := u.diskPath(part)
	if readHook != nil {
		readHook(part.Path)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return errChanged{p}
	} else if err != nil {
		return fmt.Errorf("read %s: %w (fix its permissions, or leave it out with `arv-upload resume --exclude PATTERN`)", p, err)
	}
	defer f.Close()
	planned := func() bool {
		info, err := f.Stat()
		if err != nil {
			return false
		}
		e := scanEntry{size: info.Size()}
		e.mtime, e.ctime, e.ino = identity(info)
		return sameFile(part.FileSize, part.MtimeNS, part.CtimeNS, part.Inode, e)
	}
	if !planned() {
		return errChanged{p}
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, part.FileOffset, part.Length), buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errChanged{p}
		}
		return fmt.Errorf("read %s: %w (the job is resumable)", p, err)
	}
	if !planned() {
		return errChanged{p}
	}
	return nil
}

// filesDone counts files whose every range is stored, at the start of an
// upload and as blocks are stored. It holds only the files with some but
// not all blocks stored (a few at a time, since blocks are read in plan
// order), never a per-file table.
type filesDone struct {
	j         Journal
	stored    map[int64]bool
	remaining map[string]int
}

func newFilesDone(j Journal, stored map[int64]bool) *filesDone {
	return &filesDone{j: j, stored: stored, remaining: map[string]int{}}
}

func (f *filesDone) count(ctx context.Context) (int64, error) {
	var n int64
	err := f.j.EachFile(ctx, func(r FileRecord) error {
		if r.EmptyDir {
			return nil
		}
		for _, rg := range r.Ranges {
			if !f.stored[rg.Block] {
				return nil
			}
		}
		n++
		return nil
	})
	return n, err
}

// stored records block b as stored and returns how many files it completed.
func (f *filesDone) blockStored(b BlockRecord) (int64, error) {
	f.stored[b.Seq] = true
	var n int64
	for _, p := range b.Parts {
		left, ok := f.remaining[p.Path]
		if ok {
			left--
		} else {
			rec, found, err := f.j.File(fileKeyOf(p.Path))
			if err != nil {
				return 0, err
			}
			if !found {
				continue
			}
			for _, r := range rec.Ranges {
				if !f.stored[r.Block] {
					left++
				}
			}
		}
		if left > 0 {
			f.remaining[p.Path] = left
			continue
		}
		delete(f.remaining, p.Path)
		n++
	}
	return n, nil
}

// startCheckpoints saves the partial collection periodically until stop is
// called; the first save comes after at most a minute.
func (u *Uploader) startCheckpoints(ctx context.Context) (stop func()) {
	if u.cfg.API == nil || u.cfg.CheckpointInterval < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(min(time.Minute, u.cfg.CheckpointInterval))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := u.checkpoint(ctx); err != nil && ctx.Err() == nil {
				u.cfg.Warn(fmt.Sprintf("could not save the partial collection (will try again): %v", err))
			}
			t.Reset(u.cfg.CheckpointInterval)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// sameSize reports whether locator names a block of size bytes.
func sameSize(locator string, size int64) bool {
	l, err := arvados.ParseLocator(locator)
	return err == nil && l.Size == size
}
