package agent

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/arv-upload/arv-upload/keepclient"
)

// Job states.
const (
	StateRunning     = "running"
	StateInterrupted = "interrupted"
	StateFailed      = "failed"
	StateDone        = "done"
)

// ErrFileChanged means a file changed while it was being read; the job
// stays resumable and the next run re-plans the file.
var ErrFileChanged = errors.New("file changed while being read")

// LinkSpec is a metadata link to create on the finished collection.
type LinkSpec struct {
	Class string `json:"class"`
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Options are recorded at start and reused by resume.
type Options struct {
	Name           string            `json:"name"`
	ProjectUUID    string            `json:"project_uuid,omitempty"`
	Replication    int               `json:"replication,omitempty"`
	StorageClasses []string          `json:"storage_classes,omitempty"`
	Links          []LinkSpec        `json:"links,omitempty"`
	Properties     map[string]string `json:"properties,omitempty"`
	Excludes       []string          `json:"excludes,omitempty"`
	FollowLinks    bool              `json:"follow_links,omitempty"`
	Threads        int               `json:"threads,omitempty"`
	BWLimit        int64             `json:"bwlimit,omitempty"` // bytes/s, 0 = none
}

// BlockWriter stores blocks in Keep.
type BlockWriter interface {
	// PutBlock stores data (whose md5 is hash) and returns the signed
	// locator and the replicas confirmed. Retries are its business.
	PutBlock(ctx context.Context, data []byte, hash string) (locator string, replicas int, err error)
}

// CollectionAPI is the part of the API the agent uses.
type CollectionAPI interface {
	CurrentUserUUID(ctx context.Context) (string, error)
	MaxRequestSize(ctx context.Context) int64
	CreateCollection(ctx context.Context, attrs map[string]any) (uuid, pdh string, err error)
	CreateLink(ctx context.Context, attrs map[string]any) error
}

// Progress is what the engine reports, about once a second and at the end.
type Progress struct {
	Job            string `json:"job"`
	State          string `json:"state"`
	Phase          string `json:"phase"` // scanning, uploading, finishing
	Dir            string `json:"dir"`
	FilesTotal     int64  `json:"files_total"`
	FilesDone      int64  `json:"files_done"`
	BytesTotal     int64  `json:"bytes_total"`
	BytesDone      int64  `json:"bytes_done"`
	BlocksTotal    int64  `json:"blocks_total"`
	BlocksStored   int64  `json:"blocks_stored"`
	BytesSent      int64  `json:"bytes_sent"` // bytes actually PUT this run
	CollectionUUID string `json:"collection_uuid"`
	PDH            string `json:"portable_data_hash"`
	Error          string `json:"error"`
}

// Config wires an Uploader.
type Config struct {
	Journal    Journal
	Keep       BlockWriter
	API        CollectionAPI
	OnProgress func(Progress)
	Warn       func(msg string)
	// TokenFingerprint identifies the credentials (never the secret).
	TokenFingerprint string
	APIHost          string
}

// Uploader runs one job.
type Uploader struct {
	cfg  Config
	meta JobMeta

	mu       sync.Mutex
	progress Progress
}

// New returns an Uploader for the job recorded in cfg.Journal.
func New(cfg Config) (*Uploader, error) {
	meta, err := cfg.Journal.Meta()
	if err != nil {
		return nil, err
	}
	if cfg.Warn == nil {
		cfg.Warn = func(string) {}
	}
	if cfg.OnProgress == nil {
		cfg.OnProgress = func(Progress) {}
	}
	return &Uploader{cfg: cfg, meta: meta}, nil
}

// Meta returns the job's metadata as last saved.
func (u *Uploader) Meta() JobMeta { return u.meta }

func (u *Uploader) report(f func(p *Progress)) {
	u.mu.Lock()
	f(&u.progress)
	p := u.progress
	u.mu.Unlock()
	u.cfg.OnProgress(p)
}

// Progress returns the current progress.
func (u *Uploader) Progress() Progress {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.progress
}

func (u *Uploader) saveState(state string, runErr error) {
	u.meta.State = state
	u.meta.Error = ""
	if runErr != nil {
		u.meta.Error = runErr.Error()
	}
	u.cfg.Journal.SetMeta(u.meta)
	u.report(func(p *Progress) { p.State, p.Error = state, u.meta.Error })
}

// Run scans, uploads and finishes the job. On error the job is left
// resumable; ctx cancellation gives StateInterrupted.
func (u *Uploader) Run(ctx context.Context) (JobMeta, error) {
	if u.meta.State == StateDone {
		u.report(func(p *Progress) {
			p.Job, p.State, p.CollectionUUID, p.PDH = u.meta.Job, StateDone, u.meta.CollectionUUID, u.meta.PDH
		})
		return u.meta, nil
	}
	u.report(func(p *Progress) { p.Job, p.Dir, p.State = u.meta.Job, u.meta.Dir, StateRunning })
	u.saveState(StateRunning, nil)
	err := u.run(ctx)
	switch {
	case err == nil:
		u.saveState(StateDone, nil)
	case ctx.Err() != nil:
		u.saveState(StateInterrupted, nil)
		return u.meta, ctx.Err()
	default:
		u.saveState(StateFailed, err)
	}
	return u.meta, err
}

func (u *Uploader) run(ctx context.Context) error {
	if u.meta.TokenFingerprint != "" && u.meta.TokenFingerprint != u.cfg.TokenFingerprint {
		// Signatures are bound to the token string; blocks stored under
		// another token cannot be referenced with this one.
		u.cfg.Warn("the token differs from the one this job started with; blocks already stored will be sent again so their signatures match")
		if err := u.cfg.Journal.ForgetStored(); err != nil {
			return err
		}
	}
	u.meta.TokenFingerprint, u.meta.APIHost = u.cfg.TokenFingerprint, u.cfg.APIHost
	if err := u.scan(ctx); err != nil {
		return err
	}
	if err := u.upload(ctx); err != nil {
		return err
	}
	return u.finish(ctx)
}

// ---- scan and plan ----

// FileKey orders files (and empty-directory markers, name "") so that a
// cursor visits them in the depth-first stream order of PROTOCOL 8.5:
// directory components joined by 0x00, then 0x00 0x00, then the name.
func FileKey(dir, name string) string {
	return strings.ReplaceAll(dir, "/", "\x00") + "\x00\x00" + name
}

type scanEntry struct {
	rel      string
	size     int64
	mtime    int64
	ctime    int64
	ino      uint64
	mode     uint32
	emptyDir bool
}

// walk visits regular files (and empty directories) of root in sorted
// order, applying excludes and the symlink rule.
func (u *Uploader) walk(ctx context.Context, root string, visit func(scanEntry) error) error {
	opts := u.meta.Options
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if err != nil {
			return fmt.Errorf("read %s: %w (fix its permissions, or skip it with --exclude)", p, err)
		}
		if rel == "." {
			rel = ""
		} else if excluded(opts.Excludes, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if !opts.FollowLinks {
				u.cfg.Warn(fmt.Sprintf("skipping symlink %s (use --follow-links to upload what it points to)", rel))
				return nil
			}
			info, err = os.Stat(p)
			if err != nil {
				u.cfg.Warn(fmt.Sprintf("skipping broken symlink %s: %v", rel, err))
				return nil
			}
			if info.IsDir() {
				u.cfg.Warn(fmt.Sprintf("skipping symlink to directory %s (directory links are not followed, to avoid loops)", rel))
				return nil
			}
		}
		switch {
		case info.IsDir():
			if rel != "" {
				ents, err := os.ReadDir(p)
				if err != nil {
					return fmt.Errorf("read directory %s: %w (fix its permissions, or skip it with --exclude)", p, err)
				}
				empty := true
				for _, e := range ents {
					if !excluded(opts.Excludes, path.Join(rel, e.Name())) {
						empty = false
						break
					}
				}
				if empty {
					return visit(scanEntry{rel: rel, emptyDir: true})
				}
			}
			return nil
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("open %s: %w (fix its permissions, or skip it with --exclude)", p, err)
			}
			f.Close()
			e := scanEntry{rel: rel, size: info.Size(), mtime: info.ModTime().UnixNano(), mode: uint32(info.Mode())}
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				e.ino = st.Ino
				e.ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
			}
			return visit(e)
		default:
			u.cfg.Warn(fmt.Sprintf("skipping special file %s (%s)", rel, info.Mode().Type()))
			return nil
		}
	})
}

// excluded applies arv-put's --exclude rules (PROTOCOL 11.1): a pattern
// without "/" matches a name at any depth; one with "/" matches the whole
// relative path component by component.
func excluded(patterns []string, rel string) bool {
	base := path.Base(rel)
	for _, pat := range patterns {
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, base); ok {
				return true
			}
			continue
		}
		pat = strings.TrimPrefix(pat, "./")
		if strings.Count(pat, "/") != strings.Count(rel, "/") {
			continue
		}
		if ok, _ := path.Match(pat, rel); ok {
			return true
		}
	}
	return false
}

// scan walks the tree. If what it sees matches the recorded plan, the plan
// (and every block already stored) is kept; otherwise the tree is planned
// again. Content already stored is not sent again either way: blocks are
// looked up by hash before they are PUT.
func (u *Uploader) scan(ctx context.Context) error {
	u.report(func(p *Progress) { p.Phase = "scanning" })
	h := sha256.New()
	var files, bytes int64
	err := u.walk(ctx, u.meta.Dir, func(e scanEntry) error {
		fmt.Fprintf(h, "%q %d %d %d %d %v\n", e.rel, e.size, e.mtime, e.ctime, e.ino, e.emptyDir)
		if !e.emptyDir {
			files++
			bytes += e.size
		}
		return nil
	})
	if err != nil {
		return err
	}
	fp := hex.EncodeToString(h.Sum(nil))
	if fp != u.meta.PlanFingerprint {
		if u.meta.PlanFingerprint != "" {
			u.cfg.Warn("files changed since the last run; planning again (content already stored is not sent again)")
		}
		if err := u.plan(ctx); err != nil {
			return err
		}
		u.meta.PlanFingerprint = fp
	}
	u.meta.FilesTotal, u.meta.BytesTotal = files, bytes
	if err := u.cfg.Journal.SetMeta(u.meta); err != nil {
		return fmt.Errorf("save journal: %w", err)
	}
	return nil
}

// plan assigns every file range to a block (doc.go has the rule) and
// journals files and blocks in batches.
func (u *Uploader) plan(ctx context.Context) error {
	j := u.cfg.Journal
	if err := j.ResetPlan(); err != nil {
		return err
	}
	const batch = 4096
	var files []FileRecord
	var blocks []BlockRecord
	var seq int64
	var packed *BlockRecord
	flushBlocks := func(force bool) error {
		if len(blocks) >= batch || (force && len(blocks) > 0) {
			if err := j.PutBlocks(blocks); err != nil {
				return fmt.Errorf("write journal: %w", err)
			}
			blocks = blocks[:0]
		}
		return nil
	}
	closePacked := func() {
		if packed != nil {
			blocks = append(blocks, *packed)
			packed = nil
		}
	}
	err := u.walk(ctx, u.meta.Dir, func(e scanEntry) error {
		dir, name := path.Dir(e.rel), path.Base(e.rel)
		if dir == "." {
			dir = ""
		}
		rec := FileRecord{Key: FileKey(dir, name), Path: e.rel, Size: e.size, MtimeNS: e.mtime, CtimeNS: e.ctime, Inode: e.ino, Mode: e.mode}
		if e.emptyDir {
			rec = FileRecord{Key: FileKey(e.rel, ""), Path: e.rel, EmptyDir: true}
		}
		switch {
		case e.emptyDir || e.size == 0:
		case e.size >= keepclient.BlockSize/2:
			for off := int64(0); off < e.size; off += keepclient.BlockSize {
				n := min(keepclient.BlockSize, e.size-off)
				blocks = append(blocks, BlockRecord{Seq: seq, Size: n, Parts: []Part{{Path: e.rel, FileOffset: off, Length: n}}})
				rec.Ranges = append(rec.Ranges, Range{Block: seq, FileOffset: off, Length: n})
				seq++
			}
		default:
			if packed != nil && packed.Size+e.size > keepclient.BlockSize {
				closePacked()
			}
			if packed == nil {
				packed = &BlockRecord{Seq: seq}
				seq++
			}
			rec.Ranges = []Range{{Block: packed.Seq, BlockOffset: packed.Size, Length: e.size}}
			packed.Parts = append(packed.Parts, Part{Path: e.rel, Length: e.size})
			packed.Size += e.size
		}
		files = append(files, rec)
		if len(files) >= batch {
			if err := j.PutFiles(files); err != nil {
				return fmt.Errorf("write journal: %w", err)
			}
			files = files[:0]
		}
		return flushBlocks(false)
	})
	if err != nil {
		return err
	}
	closePacked()
	if err := j.PutFiles(files); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	u.meta.BlocksTotal = seq
	return flushBlocks(true)
}

// ---- upload ----

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

// upload sends every block not yet stored. Memory: at most threads+1
// buffers of up to 64 MiB exist at once (the pool), whatever the dataset.
func (u *Uploader) upload(ctx context.Context) error {
	var todo []int64
	var stored, storedBytes int64
	if err := u.cfg.Journal.EachBlock(ctx, func(b BlockRecord) error {
		if b.Stored {
			stored++
			storedBytes += b.Size
		} else {
			todo = append(todo, b.Seq)
		}
		return nil
	}); err != nil {
		return err
	}
	u.report(func(p *Progress) {
		p.Phase = "uploading"
		p.FilesTotal, p.BytesTotal, p.BlocksTotal = u.meta.FilesTotal, u.meta.BytesTotal, u.meta.BlocksTotal
		p.BlocksStored, p.BytesDone = stored, storedBytes
	})
	threads := u.threads()
	pool := make(chan []byte, threads+1)
	for i := 0; i < threads+1; i++ {
		pool <- nil // allocated on first use
	}
	toPut := make(chan readBlock)
	done := make(chan BlockRecord, threads)
	g, gctx := errgroup.WithContext(ctx)
	gctx, cancel := context.WithCancel(gctx)
	defer cancel()
	limiter := newLimiter(u.meta.Options.BWLimit)

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
			if cap(buf) < int(rec.Size) {
				buf = make([]byte, rec.Size, max(rec.Size, keepclient.BlockSize/2))
			}
			buf = buf[:rec.Size]
			if err := u.readParts(rec, buf); err != nil {
				return err
			}
			sum := md5.Sum(buf)
			rec.Hash = hex.EncodeToString(sum[:])
			if loc, exp, ok := u.cfg.Journal.StoredHash(rec.Hash); ok && time.Unix(exp, 0).After(time.Now().Add(24*time.Hour)) {
				rec.Locator, rec.Expiry, rec.Stored = loc, exp, true
				pool <- buf
				select {
				case done <- rec:
				case <-gctx.Done():
					return gctx.Err()
				}
				continue
			}
			select {
			case toPut <- readBlock{rec, buf}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		g.Go(func() error {
			defer wg.Done()
			for rb := range toPut {
				if err := limiter.wait(gctx, len(rb.buf)); err != nil {
					return err
				}
				loc, replicas, err := u.cfg.Keep.PutBlock(gctx, rb.buf, rb.rec.Hash)
				if err != nil {
					return fmt.Errorf("upload block %d (%s): %w", rb.rec.Seq, rb.rec.Parts[0].Path, err)
				}
				u.report(func(p *Progress) { p.BytesSent += int64(len(rb.buf)) })
				pool <- rb.buf
				rb.rec.Locator, rb.rec.Replicas, rb.rec.Stored = loc, replicas, true
				rb.rec.Expiry = keepclient.SignatureExpiry(loc).Unix()
				select {
				case done <- rb.rec:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	go func() { wg.Wait(); g.Wait(); close(done) }()

	// Committer: journal stored blocks in batches; a block is recorded
	// only after Keep confirmed it.
	var pending []BlockRecord
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := u.cfg.Journal.PutBlocks(pending); err != nil {
			return fmt.Errorf("write journal (is the disk full?): %w", err)
		}
		for _, b := range pending {
			u.report(func(p *Progress) { p.BlocksStored++; p.BytesDone += b.Size })
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
	if err := g.Wait(); err != nil {
		return err
	}
	return commitErr
}

// readParts fills buf with the block's parts, checking that no file
// changed since it was planned nor while it was read.
func (u *Uploader) readParts(rec BlockRecord, buf []byte) error {
	off := 0
	for _, part := range rec.Parts {
		p := filepath.Join(u.meta.Dir, filepath.FromSlash(part.Path))
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("read %s: %w (the job is resumable: restore the file, or run `arv-upload resume` to re-plan)", p, err)
		}
		before, err := f.Stat()
		if err == nil {
			_, err = io.ReadFull(io.NewSectionReader(f, part.FileOffset, part.Length), buf[off:off+int(part.Length)])
		}
		after, err2 := os.Stat(p)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if err2 != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) ||
			before.Size() < part.FileOffset+part.Length {
			return fmt.Errorf("%w: %s (run `arv-upload resume` when it is complete; it will be read again)", ErrFileChanged, p)
		}
		off += int(part.Length)
	}
	return nil
}

// limiter is a simple token bucket for --bwlimit.
type limiter struct {
	mu   sync.Mutex
	rate int64
	next time.Time
}

func newLimiter(rate int64) *limiter { return &limiter{rate: rate} }

func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	start := l.next
	l.next = l.next.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	l.mu.Unlock()
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- finish ----

// Manifest builds the normalized manifest from the journal, one directory
// at a time (memory: one directory's files plus the block locator table).
func (u *Uploader) Manifest(ctx context.Context, w io.Writer) (files int64, err error) {
	locs := map[int64]string{}
	if err := u.cfg.Journal.EachBlock(ctx, func(b BlockRecord) error {
		if !b.Stored {
			return fmt.Errorf("block %d is not stored yet", b.Seq)
		}
		locs[b.Seq] = b.Locator
		return nil
	}); err != nil {
		return 0, err
	}
	sw := keepclient.NewStreamWriter(w)
	curDir, curEmpty := "", false
	var cur []keepclient.ManifestFile
	started := false
	flushDir := func() error {
		if !started {
			return nil
		}
		return sw.WriteDir(curDir, cur, curEmpty)
	}
	err = u.cfg.Journal.EachFile(ctx, func(f FileRecord) error {
		dir := path.Dir(f.Path)
		if f.EmptyDir {
			dir = f.Path
		} else if dir == "." {
			dir = ""
		}
		if !started || dir != curDir {
			if err := flushDir(); err != nil {
				return err
			}
			curDir, cur, curEmpty, started = dir, cur[:0], false, true
		}
		if f.EmptyDir {
			curEmpty = true
			return nil
		}
		mf := keepclient.ManifestFile{Path: f.Path}
		for _, r := range f.Ranges {
			mf.Segments = append(mf.Segments, keepclient.Segment{Locator: locs[r.Block], Offset: r.BlockOffset, Length: r.Length})
		}
		cur = append(cur, mf)
		files++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return files, flushDir()
}

func (u *Uploader) finish(ctx context.Context) error {
	u.report(func(p *Progress) { p.Phase = "finishing" })
	var sb strings.Builder
	if _, err := u.Manifest(ctx, &sb); err != nil {
		return err
	}
	text := sb.String()
	if err := keepclient.CheckManifestSize(text, u.cfg.API.MaxRequestSize(ctx)); err != nil {
		return err
	}
	if len(text) > 0 && len(text) <= keepclient.BlockSize {
		// The manifest is also stored in Keep, as arv-put does.
		if _, _, err := u.cfg.Keep.PutBlock(ctx, []byte(text), keepclient.HashOf([]byte(text))); err != nil {
			return fmt.Errorf("store manifest block: %w", err)
		}
	}
	opts := u.meta.Options
	owner := opts.ProjectUUID
	if owner == "" {
		var err error
		if owner, err = u.cfg.API.CurrentUserUUID(ctx); err != nil {
			return fmt.Errorf("get current user: %w", err)
		}
	}
	name := opts.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("Saved at %s by %s@%s", time.Now().UTC().Format("2006-01-02 15:04:05 UTC"), os.Getenv("USER"), host)
	}
	attrs := map[string]any{"name": name, "owner_uuid": owner, "manifest_text": text}
	if opts.Replication > 0 {
		attrs["replication_desired"] = opts.Replication
	}
	if len(opts.StorageClasses) > 0 {
		attrs["storage_classes_desired"] = opts.StorageClasses
	}
	if len(opts.Properties) > 0 {
		attrs["properties"] = opts.Properties
	}
	uuid, pdh := u.meta.CollectionUUID, u.meta.PDH
	if uuid == "" { // a previous run may have created it and then failed on a link
		var err error
		uuid, pdh, err = u.cfg.API.CreateCollection(ctx, attrs)
		if err != nil {
			return fmt.Errorf("create collection: %w", err)
		}
		local := keepclient.PortableDataHash(text)
		if pdh != local {
			return fmt.Errorf("collection %s: the server's portable data hash %s differs from ours %s", uuid, pdh, local)
		}
		u.meta.CollectionUUID, u.meta.PDH = uuid, pdh
		if err := u.cfg.Journal.SetMeta(u.meta); err != nil {
			return fmt.Errorf("save journal: %w", err)
		}
	}
	for _, l := range opts.Links {
		la := map[string]any{"link_class": l.Class, "name": l.Name, "head_uuid": uuid}
		if l.Value != "" {
			la["properties"] = map[string]any{"value": l.Value}
		}
		if err := u.cfg.API.CreateLink(ctx, la); err != nil {
			return fmt.Errorf("create %s link %q on %s: %w", l.Class, l.Name, uuid, err)
		}
	}
	u.report(func(p *Progress) { p.CollectionUUID, p.PDH = uuid, pdh })
	return nil
}

// Plan scans and plans the tree without uploading (for --dry-run).
func (u *Uploader) Plan(ctx context.Context) (JobMeta, error) {
	if err := u.scan(ctx); err != nil {
		return u.meta, err
	}
	return u.meta, nil
}
