package agent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"golang.org/x/sync/errgroup"
)

type readBlock struct {
	rec BlockRecord
	buf []byte
	// fill, for a packed block, says how much of buf is read so far: the
	// block is sent on while it is read (fill.go). nil: buf is read.
	fill *fillState
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

// Committer batching: stored blocks are journaled (one transaction, one
// fsync) every commitBatch blocks or commitInterval, whichever comes
// first.
const (
	commitBatch    = 64
	commitInterval = 200 * time.Millisecond
)

// scanAndUpload scans the tree and uploads every block not yet stored.
// When the tree must be planned (a new job, or files changed), the upload
// runs beside the plan and follows it (planFeed), so that the first block
// goes out once it is planned rather than after the whole tree; the plan
// goes on to its end even when the upload fails (a retry then finds the
// plan made). Progress says "scanning", with the totals planned so far,
// until the plan is over.
func (u *Uploader) scanAndUpload(ctx context.Context) error {
	need, err := u.planNeeded(ctx)
	if err != nil {
		return err
	}
	if !need {
		u.warnUnusedExcludes()
		return u.upload(ctx, nil)
	}
	// The plan reports what it keeps as done, the upload what it stores.
	u.report(func(p *Progress) { p.BlocksStored, p.BytesDone, p.FilesDone = 0, 0, 0 })
	feed := newPlanFeed()
	uctx, cancelUpload := context.WithCancelCause(ctx)
	defer cancelUpload(nil)
	planned := make(chan error, 1)
	go func() {
		err := u.makePlan(ctx, feed)
		feed.finish(err)
		if err != nil {
			cancelUpload(err)
		}
		planned <- err
	}()
	upErr := u.upload(uctx, feed)
	if err := <-planned; err != nil {
		return err
	}
	u.warnUnusedExcludes()
	return upErr
}

// upload sends every block not yet stored, through three stages composed
// in one errgroup: a blockReader fills pooled buffers from the planned file
// ranges, putters hash them and PUT those Keep does not hold yet, and a
// committer journals what Keep confirmed. Memory: at most threads+1
// buffers of up to 64 MiB exist at once (the pool), whatever the dataset.
// Blocks whose files changed since they were planned are skipped; the
// error then wraps ErrFileChanged and names them, after every other block
// was sent. With feed, the blocks are those of the plan being made (see
// scanAndUpload); else every block of the journal not stored yet.
func (u *Uploader) upload(ctx context.Context, feed *planFeed) error {
	var todo []int64
	stored := map[int64]bool{}
	if feed == nil {
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
		// The plan just made counted the files done; else count them,
		// which reads every file record.
		filesDone := u.plannedFilesDone
		u.plannedFilesDone = -1
		if filesDone < 0 {
			var err error
			if filesDone, err = newFilesDone(u.cfg.Journal, stored).count(ctx); err != nil {
				return err
			}
		}
		u.report(func(p *Progress) {
			p.Phase = "uploading"
			p.FilesTotal, p.BytesTotal, p.BlocksTotal = u.meta.FilesTotal, u.meta.BytesTotal, u.meta.BlocksTotal
			p.BlocksStored, p.BytesDone, p.FilesDone = int64(len(stored)), storedBytes, filesDone
		})
	}
	// Beside a plan, stored holds the blocks this upload stores: the
	// plan's new blocks hold only files planned anew, none of whose blocks
	// was stored before.
	files := newFilesDone(u.cfg.Journal, stored)
	threads := u.threads()
	pool := newBufferPool(threads + 1)
	defer pool.release() // after every stage has stopped (g.Wait below)
	toPut := make(chan readBlock)
	done := make(chan BlockRecord, threads)
	reader := &blockReader{u: u, todo: todo, feed: feed, pool: pool, out: toPut}
	putters := &putters{u: u, n: threads, margin: u.signatureMargin(ctx), pool: pool, in: toPut, out: done}
	committer := &committer{u: u, files: files, in: done}

	g, gctx := errgroup.WithContext(ctx)
	// Checkpoints read the job's metadata, which a plan beside the upload
	// writes: they start once it is over. planOver is closed once
	// stopCheckpoints is set for good.
	stopCheckpoints := func() {}
	planOver := make(chan struct{})
	if feed == nil {
		stopCheckpoints = u.startCheckpoints(gctx)
		close(planOver)
	} else {
		go func() {
			defer close(planOver)
			if feed.result(gctx) != nil {
				return
			}
			u.report(func(p *Progress) {
				p.Phase = "uploading"
				p.FilesTotal, p.BytesTotal, p.BlocksTotal = u.meta.FilesTotal, u.meta.BytesTotal, u.meta.BlocksTotal
			})
			stopCheckpoints = u.startCheckpoints(gctx)
		}()
	}
	g.Go(func() error { return reader.run(gctx) })
	g.Go(func() error { return putters.run(gctx) })
	g.Go(func() error { return committer.run(gctx) })
	// The first error is the cause: a stage that fails cancels the others,
	// and the committer still journals what Keep confirmed before it stops.
	err := g.Wait() // and gctx ends
	<-planOver
	stopCheckpoints()
	if err != nil {
		return err
	}
	return u.changedError(reader.changed)
}

// changedError names the files the reader found changed (nil if none) and
// counts them in Progress.FilesChanged.
func (u *Uploader) changedError(changed []string) error {
	if len(changed) == 0 {
		return nil
	}
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

// bufferPool hands out at most n block buffers, each taken from the
// process-wide free list (getBlockBuffer) on first use and given back to it
// by release.
type bufferPool struct {
	free  chan []byte
	mu    sync.Mutex
	taken [][]byte
}

func newBufferPool(n int) *bufferPool {
	p := &bufferPool{free: make(chan []byte, n)}
	for range n {
		p.free <- nil // allocated on first use
	}
	return p
}

// get waits for a buffer.
func (p *bufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case buf := <-p.free:
		if buf == nil {
			buf = getBlockBuffer()
			p.mu.Lock()
			p.taken = append(p.taken, buf)
			p.mu.Unlock()
		}
		return buf, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put gives a buffer back for the next block; it never blocks.
func (p *bufferPool) put(buf []byte) { p.free <- buf }

// release gives every buffer back to the process; nothing may use them
// afterwards.
func (p *bufferPool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.taken {
		putBlockBuffer(b)
	}
	p.taken = nil
}

// blockReader is the first stage: it reads the blocks to upload, in plan
// order, each into a buffer from the pool, and sends them on out (closed
// when it returns). A block whose files changed is skipped; its file is
// named in changed (read after the stage stopped).
type blockReader struct {
	u    *Uploader
	todo []int64
	// feed, when set, gives the blocks instead of todo: those of the plan
	// being made, as it journals them.
	feed    *planFeed
	pool    *bufferPool
	out     chan<- readBlock
	changed []string
}

func (r *blockReader) run(ctx context.Context) error {
	defer close(r.out)
	if r.feed == nil {
		for _, seq := range r.todo {
			if err := r.read(ctx, seq); err != nil {
				return err
			}
		}
		return nil
	}
	for have := int64(-1); ; {
		from, next, done, live, err := r.feed.wait(ctx, have)
		if err != nil {
			return err
		}
		for seq := from; seq < next; seq++ {
			if err := r.read(ctx, seq); err != nil {
				return err
			}
		}
		have = next
		if live != nil {
			if err := r.readLive(ctx, live); err != nil {
				return err
			}
			have = live.seq + 1
			continue
		}
		if done {
			return nil
		}
	}
}

// read reads block seq, unless it is stored, and sends it on.
func (r *blockReader) read(ctx context.Context, seq int64) error {
	rec, err := r.u.cfg.Journal.Block(seq)
	if err != nil || rec.Stored {
		return err
	}
	buf, err := r.pool.get(ctx)
	if err != nil {
		return err
	}
	buf = buf[:rec.Size]
	if len(rec.Parts) == 1 {
		// Read whole, then hashed by a putter: several blocks of big
		// files are hashed at once, on several cores.
		if _, err := r.u.readParts(ctx, fixedParts(rec.Parts), buf, nil, nil); err != nil {
			r.pool.put(buf)
			return r.failed(err)
		}
		select {
		case r.out <- readBlock{rec: rec, buf: buf}:
			return nil
		case <-ctx.Done():
			r.pool.put(buf)
			return ctx.Err()
		}
	}
	// A packed block (small files, syscalls more than bytes) goes to a
	// putter while it is read, which hashes what is filled: the read and
	// the hash overlap. The putter drops it if the read fails.
	return r.sendFilling(ctx, rec, buf, func(fill *fillState) (BlockRecord, error) {
		_, err := r.u.readParts(ctx, fixedParts(rec.Parts), buf, fill, nil)
		return rec, err
	})
}

// readLive reads the packed block the plan is filling, its files as they
// are planned (see planFeed). The block is complete once the plan has
// journaled it; a plan that fails ends the read with its error.
func (r *blockReader) readLive(ctx context.Context, live *liveBlock) error {
	buf, err := r.pool.get(ctx)
	if err != nil {
		return err
	}
	buf = buf[:cap(buf)] // its size is known at the end
	return r.sendFilling(ctx, BlockRecord{Seq: live.seq}, buf, func(fill *fillState) (BlockRecord, error) {
		parts, err := r.u.readParts(ctx, live, buf, fill, r.feed.over)
		rec := BlockRecord{Seq: live.seq, Parts: parts}
		for _, p := range parts {
			rec.Size += p.Length
		}
		if err == nil || errors.Is(err, errPlanStopped) {
			// Complete only once journaled (else the plan's error).
			if perr := r.feed.published(ctx, live.seq); err == nil || perr != nil {
				err = perr
			}
		}
		return rec, err
	})
}

// sendFilling sends a packed block on to a putter while read fills buf,
// and returns once the read is over (one block is read at a time): the
// putter hashes what is filled, and drops the block if the read fails.
// rec is the block as known before the read; read returns it whole.
func (r *blockReader) sendFilling(ctx context.Context, rec BlockRecord, buf []byte, read func(*fillState) (BlockRecord, error)) error {
	fill := newFillState()
	go func() { fill.finish(read(fill)) }()
	select {
	case r.out <- readBlock{rec: rec, buf: buf, fill: fill}:
	case <-ctx.Done():
		<-fill.over
		r.pool.put(buf)
		return ctx.Err()
	}
	<-fill.over
	if fill.err != nil {
		return r.failed(fill.err)
	}
	return nil
}

// failed returns what a failed read of a block means for the stage: a
// file that changed is named (the block is skipped) and the stage goes
// on; any other error stops it.
func (r *blockReader) failed(err error) error {
	var ce errChanged
	if errors.As(err, &ce) {
		r.changed = append(r.changed, ce.path)
		return nil
	}
	return err
}

// putters is the second stage: n goroutines hash the blocks read (so MD5
// runs on n cores) and n others PUT those Keep does not hold yet, and send
// each stored block on out (closed when they have all returned). Hashing
// apart from sending lets the block read ahead (the pool's spare buffer)
// be hashed while the others are sent, so that a PUT ending starts the
// next one at once instead of after a hash: measured on 2 GiB through the
// dev cluster's proxy, 2 cores, the time between PUTs fell from 0.15-0.3 s
// to none.
type putters struct {
	u      *Uploader
	n      int
	margin time.Duration
	pool   *bufferPool
	in     <-chan readBlock
	out    chan<- BlockRecord
}

func (p *putters) run(ctx context.Context) error {
	defer close(p.out)
	g, ctx := errgroup.WithContext(ctx)
	hashed := make(chan readBlock)
	var hashing atomic.Int32
	hashing.Store(int32(p.n))
	for range p.n {
		g.Go(func() error {
			defer func() {
				if hashing.Add(-1) == 0 {
					close(hashed)
				}
			}()
			for rb := range p.in {
				ok, err := p.hash(ctx, &rb)
				if !ok {
					p.pool.put(rb.buf)
					if err != nil {
						return err
					}
					continue
				}
				if p.u.cfg.hashHook != nil {
					p.u.cfg.hashHook(rb.rec.Seq)
				}
				select {
				case hashed <- rb:
				case <-ctx.Done():
					p.pool.put(rb.buf)
					return ctx.Err()
				}
			}
			return nil
		})
		g.Go(func() error {
			for rb := range hashed {
				if err := p.put(ctx, rb); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// put stores one hashed block unless Keep holds it already, gives its
// buffer back and sends its record on.
func (p *putters) put(ctx context.Context, rb readBlock) error {
	j := p.u.cfg.Journal
	// A stored block is reused only when it is this block: same hash and
	// same size (the journal keys stored blocks by hash).
	if loc, exp, ok := j.StoredHash(rb.rec.Hash); ok && fresh(loc, exp, time.Now().Add(p.margin)) && sameSize(loc, rb.rec.Size) {
		rb.rec.Locator, rb.rec.Expiry, rb.rec.Stored = loc, exp, true
		p.pool.put(rb.buf)
	} else {
		loc, replicas, err := p.u.cfg.Keep.PutBlock(ctx, rb.buf, rb.rec.Hash)
		if err != nil {
			p.pool.put(rb.buf)
			return fmt.Errorf("upload block %d (%s): %w", rb.rec.Seq, rb.rec.Parts[0].Path, err)
		}
		p.u.report(func(pr *Progress) { pr.BytesSent += int64(len(rb.buf)) })
		p.pool.put(rb.buf)
		rb.rec.Locator, rb.rec.Replicas, rb.rec.Stored = loc, replicas, true
		rb.rec.Expiry = arvados.SignatureExpiry(loc).Unix()
	}
	select {
	case p.out <- rb.rec:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hashChunk: a putter hashes a packed block being read once this much
// more of it is filled (or the read is over).
const hashChunk = 1 << 20

// hash sets rb's hash (and, for a packed block hashed as it is read
// (rb.fill), its record and length as read). ok is false when the block is
// to be dropped: its read failed (nil error: the reader says why) or ctx
// ended; its buffer may then be given back, the read being over.
func (p *putters) hash(ctx context.Context, rb *readBlock) (ok bool, err error) {
	var sum [md5.Size]byte
	if rb.fill == nil {
		sum = md5.Sum(rb.buf)
	} else {
		h := md5.New()
		for pos := 0; ; {
			filled, done, err := rb.fill.wait(ctx, min(pos+hashChunk, len(rb.buf)))
			if err != nil {
				<-rb.fill.over // until then the reader may write into the buffer
				return false, ctx.Err()
			}
			h.Write(rb.buf[pos:filled])
			pos = filled
			if done {
				h.Sum(sum[:0])
				break
			}
		}
		// the block as read (a live block's size is known now)
		rb.rec, rb.buf = rb.fill.rec, rb.buf[:rb.fill.rec.Size]
	}
	rb.rec.Hash = hex.EncodeToString(sum[:])
	return true, nil
}

// committer is the last stage: it journals stored blocks in batches
// (commitBatch records or commitInterval), so a block is recorded as
// stored only after Keep confirmed it, and `kill -9` loses at most the
// blocks in flight. It reads in until it is closed, even after another
// stage failed, so that whatever Keep confirmed is journaled.
type committer struct {
	u       *Uploader
	files   *filesDone
	in      <-chan BlockRecord
	pending []BlockRecord
}

func (c *committer) run(ctx context.Context) error {
	tick := time.NewTicker(commitInterval)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-c.in:
			if !ok {
				return c.flush()
			}
			c.pending = append(c.pending, b)
			if len(c.pending) >= commitBatch {
				if err := c.flush(); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
}

func (c *committer) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	recs := make([]BlockRecord, len(c.pending))
	for i, b := range c.pending {
		recs[i] = b
		recs[i].Parts = nil // recorded at plan time; not rewritten
	}
	if err := c.u.cfg.Journal.PutBlocks(recs); err != nil {
		return fmt.Errorf("write journal (is the disk full?): %w", err)
	}
	for _, b := range c.pending {
		n, err := c.files.blockStored(b)
		if err != nil {
			return err
		}
		c.u.report(func(p *Progress) { p.BlocksStored++; p.BytesDone += b.Size; p.FilesDone += n })
	}
	clear(c.pending) // drop the parts they hold
	c.pending = c.pending[:0]
	return nil
}

// partReaders is how many files of one packed block are read at once:
// each part has its fixed place in the block buffer, so readers fill
// disjoint ranges. On a local disk with a warm cache small files cost
// syscalls (CPU); on a network file system, round trips: several in
// flight hide them.
const partReaders = 8

// partSource gives a block's parts in order as they become known: since(i)
// returns the parts from index i on, whether no more follow, and a
// channel closed when that changes. A journaled block's parts are all
// known (fixedParts); a live block's grow as the plan goes (liveBlock).
type partSource interface {
	since(i int) (parts []Part, closed bool, changed <-chan struct{})
}

type fixedParts []Part

func (p fixedParts) since(i int) ([]Part, bool, <-chan struct{}) { return p[i:], true, nil }

// errPlanStopped: the plan returned before it completed a live block.
var errPlanStopped = errors.New("the plan stopped before the block was complete")

// readParts fills buf with the block's parts and returns them. A part whose
// file is not the one planned any more (size, mtime, ctime or inode
// differ, after the read or, for a large part, before it too), or has
// vanished or shrunk, gives errChanged: two versions of a file are never
// mixed into one collection. partReaders goroutines read the parts as
// they become known, each into its place; the error is the one of the
// first failing part in block order. With fill, the prefix read so far is
// reported as it grows. stopped, when closed before the source is, ends
// the read with errPlanStopped.
func (u *Uploader) readParts(ctx context.Context, src partSource, buf []byte, fill *fillState, stopped <-chan struct{}) ([]Part, error) {
	if parts, closed, _ := src.since(0); closed && len(parts) == 1 {
		return parts, u.readPart(parts[0], buf[:parts[0].Length])
	}
	type job struct {
		i    int
		off  int64
		part Part
	}
	var (
		jobs    = make(chan job, 2*partReaders)
		failed  atomic.Bool
		mu      sync.Mutex
		errAt   = -1
		firstEr error
		wg      sync.WaitGroup
		// Under mu: where each part goes, which are in, and how many
		// from the first.
		offs   = []int64{0}
		in     []bool
		inFrom int
	)
	fail := func(i int, err error) {
		mu.Lock()
		if errAt < 0 || i < errAt {
			errAt, firstEr = i, err
		}
		mu.Unlock()
		failed.Store(true)
	}
	for range partReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if failed.Load() || ctx.Err() != nil {
					continue // drain
				}
				if err := u.readPart(j.part, buf[j.off:j.off+j.part.Length]); err != nil {
					fail(j.i, err)
					continue
				}
				mu.Lock()
				in[j.i] = true
				for inFrom < len(in) && in[inFrom] {
					inFrom++
				}
				prefix := offs[inFrom]
				mu.Unlock()
				if fill != nil {
					fill.advance(int(prefix))
				}
			}
		}()
	}
	var parts []Part
	var srcErr error
dispatch:
	for {
		more, closed, changed := src.since(len(parts))
		for _, p := range more {
			if failed.Load() || ctx.Err() != nil {
				break dispatch
			}
			mu.Lock()
			i, off := len(parts), offs[len(parts)]
			if off+p.Length > int64(len(buf)) {
				mu.Unlock()
				srcErr = fmt.Errorf("block larger than its buffer (%d bytes)", len(buf))
				break dispatch
			}
			parts = append(parts, p)
			offs = append(offs, off+p.Length)
			in = append(in, false)
			mu.Unlock()
			jobs <- job{i, off, p}
		}
		if closed {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			break dispatch
		case <-stopped:
			if _, closed, _ := src.since(len(parts)); !closed {
				srcErr = errPlanStopped
				break dispatch
			}
		}
	}
	close(jobs)
	wg.Wait()
	switch {
	case firstEr != nil:
		return parts, firstEr
	case srcErr != nil:
		return parts, srcErr
	}
	return parts, ctx.Err()
}

// checkBefore: a part at least this long has its file's identity checked
// before it is read too, so that a changed large file is not read in vain.
// A small file is checked once, after the read, which is enough: what the
// read returned came from the file that fstat then describes.
const checkBefore = 1 << 20

// readPart reads one part into buf with few syscalls: open, pread (once
// for a small file), fstat, close.
func (u *Uploader) readPart(part Part, buf []byte) error {
	p := u.diskPath(part)
	if u.cfg.readHook != nil {
		u.cfg.readHook(part.Path)
	}
	fd, err := openRead(p)
	if errors.Is(err, fs.ErrNotExist) {
		return errChanged{p}
	} else if err != nil {
		return fmt.Errorf("read %s: %w (fix its permissions, or leave it out with `arv-upload resume --exclude PATTERN`)", p, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	defer syscall.Close(fd)
	planned := func() bool {
		var st syscall.Stat_t
		if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
			return false
		}
		return sameFile(part.FileSize, part.MtimeNS, part.CtimeNS, part.Inode, statEntry(&st))
	}
	if part.Length >= checkBefore && !planned() {
		return errChanged{p}
	}
	for done := 0; done < len(buf); {
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = syscall.Pread(fd, buf[done:], part.FileOffset+int64(done))
			return err
		})
		if err != nil {
			if !planned() { // e.g. replaced by a directory
				return errChanged{p}
			}
			return fmt.Errorf("read %s: %w (the job is resumable)", p, err)
		}
		if n == 0 { // shrunk
			return errChanged{p}
		}
		done += n
	}
	if !planned() {
		return errChanged{p}
	}
	return nil
}

// openRead opens path read-only without the os package's poller
// registration (two fcntl and an epoll_ctl per file that a regular file
// does not need).
func openRead(path string) (fd int, err error) {
	err = ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// ignoringEINTR retries f while it is interrupted by a signal (the Go
// runtime preempts with signals; some file systems let them through).
func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
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
		if p.FileOffset == 0 && p.Length == p.FileSize {
			n++ // the whole file is in this block: no need to look it up
			continue
		}
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
