package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// FileKey orders files (and empty-directory markers, name "") so that a
// cursor visits them in the depth-first stream order of PROTOCOL 8.5:
// directory components joined by 0x00, then 0x00 0x00, then the name.
func FileKey(dir, name string) string {
	return strings.ReplaceAll(dir, "/", "\x00") + "\x00\x00" + name
}

// fileKeyOf is FileKey for a file's relative path.
func fileKeyOf(rel string) string {
	dir, name := path.Split(rel)
	return FileKey(strings.TrimSuffix(dir, "/"), name)
}

// maxBlockParts caps the files packed into one block, so a block record
// (read whole by the reader, rewritten when stored) stays around 2 MiB
// however tiny the files: 16384 files of 4 KiB still fill a 64 MiB block.
const maxBlockParts = 16384

type scanEntry struct {
	rel      string // path in the collection
	input    int    // index in the job's inputs
	size     int64
	mtime    int64
	ctime    int64
	ino      uint64
	mode     uint32
	emptyDir bool
}

// identity fills the stat fields the plan and the reader compare.
func identity(info fs.FileInfo) (mtime, ctime int64, ino uint64) {
	mtime = info.ModTime().UnixNano()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		ino, ctime = st.Ino, st.Ctim.Sec*1e9+st.Ctim.Nsec
	}
	return
}

// statEntry is what the reader compares with a part's planned identity
// (see identity).
func statEntry(st *syscall.Stat_t) scanEntry {
	return scanEntry{size: st.Size, mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec, ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec, ino: st.Ino}
}

// walk visits the regular files (and empty directories) of every input
// in order, each directory in sorted order, applying excludes (relative to
// each input directory) and the symlink rule. A scanEntry's rel is its
// path in the collection.
func (u *Uploader) walk(ctx context.Context, visit func(scanEntry) error) error {
	u.excludeUsed = map[string]bool{}
	u.skipped = 0
	defer func() { n := u.skipped; u.report(func(p *Progress) { p.FilesSkipped = n }) }()
	for i, in := range u.inputs() {
		if in.File {
			info, err := os.Stat(in.Path)
			if err != nil {
				return fmt.Errorf("read %s: %w (fix its permissions, or leave it out)", in.Path, err)
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", in.Path)
			}
			e := scanEntry{rel: in.As, input: i, size: info.Size(), mode: uint32(info.Mode())}
			e.mtime, e.ctime, e.ino = identity(info)
			if err := visit(e); err != nil {
				return err
			}
			continue
		}
		if err := u.walkDir(ctx, i, in, visit); err != nil {
			return err
		}
	}
	return nil
}

// walkDir walks one input directory.
func (u *Uploader) walkDir(ctx context.Context, input int, in Input, visit func(scanEntry) error) error {
	opts := u.meta.Options
	root := in.Path
	// Directory links are followed with --follow-links: walked in place
	// (the OS resolves them again when the files are read), each target
	// directory once, so a link to an ancestor is a loop, skipped.
	followed := map[[2]uint64]bool{}
	stats := newStatAhead(u.cfg.statParallelism)
	under := strings.TrimSuffix(filepath.Clean(root), "/") + "/" // the prefix of what is under root
	var walkFn fs.WalkDirFunc
	walkFrom := func(start string) error { return filepath.WalkDir(start, walkFn) }
	walkFn = func(p string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		var rel string
		if strings.HasPrefix(p, under) && !strings.HasSuffix(p, "/") {
			// What WalkDir gives under root: root, "/", a clean path.
			// filepath.Rel would clean it again (a tenth of a plan's time).
			rel = p[len(under):]
		} else {
			rel, _ = filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
		}
		if err != nil {
			if u.survey != nil {
				u.survey.add(&u.survey.Unreadable, err.Error())
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			return fmt.Errorf("%w (fix its permissions, or leave it out with --exclude PATTERN, which resume accepts too)", err)
		}
		if rel == "." {
			rel = ""
		} else if pat := excludedBy(opts.Excludes, rel); pat != "" {
			u.excludeUsed[pat] = true
			if u.survey != nil {
				u.survey.add(&u.survey.Excluded, path.Join(in.As, rel))
			}
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		} else if !utf8.ValidString(rel) {
			return fmt.Errorf("%w: %q (Arvados would store it changed; rename it, or leave it out with --exclude PATTERN, which resume accepts too)", ErrInvalidName, p)
		}
		inDir := rel // relative to the input directory
		if in.As != "" {
			rel = path.Join(in.As, rel)
		}
		info, ahead, err := stats.lstat(p, opts.Excludes)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if !opts.FollowLinks {
				u.skip(fmt.Sprintf("skipping symlink %s (use --follow-links to upload what it points to)", rel), rel+" (symlink)")
				return nil
			}
			info, err = os.Stat(p)
			if err != nil {
				u.skip(fmt.Sprintf("skipping broken symlink %s: %v", rel, err), rel+" (broken symlink)")
				return nil
			}
			if info.IsDir() {
				key := dirKey(info)
				if followed[key] || isAncestor(root, p, info) {
					u.skip(fmt.Sprintf("skipping symlink %s: it leads back into the tree (a loop)", rel), rel+" (symlink loop)")
					return nil
				}
				followed[key] = true
				return walkFrom(p + string(filepath.Separator))
			}
		}
		switch {
		case info.IsDir():
			ents, err := os.ReadDir(p)
			if err != nil {
				if rel == "" {
					return nil // WalkDir reads it next, and says why it cannot
				}
				if u.survey != nil {
					u.survey.add(&u.survey.Unreadable, err.Error())
					return filepath.SkipDir
				}
				return fmt.Errorf("%w (fix its permissions, or leave it out with --exclude PATTERN, which resume accepts too)", err)
			}
			if rel != "" {
				empty := true
				for _, e := range ents {
					if !excluded(opts.Excludes, path.Join(inDir, e.Name())) {
						empty = false
						break
					}
				}
				if empty {
					return visit(scanEntry{rel: rel, input: input, emptyDir: true})
				}
			}
			stats.prefetch(p, inDir, ents, opts.Excludes)
			return nil
		case info.Mode().IsRegular():
			var err error
			if ahead != nil && ahead.info == info {
				err = ahead.accessErr // prefetched
			} else {
				err = readable(p)
			}
			if err != nil {
				if u.survey != nil {
					u.survey.add(&u.survey.Unreadable, err.Error())
					return nil
				}
				return fmt.Errorf("%w (fix its permissions, or leave it out with --exclude PATTERN, which resume accepts too)", err)
			}
			e := scanEntry{rel: rel, input: input, size: info.Size(), mode: uint32(info.Mode())}
			e.mtime, e.ctime, e.ino = identity(info)
			return visit(e)
		default:
			u.skip(fmt.Sprintf("skipping special file %s (%s)", rel, info.Mode().Type()), fmt.Sprintf("%s (%s)", rel, info.Mode().Type()))
			return nil
		}
	}
	return walkFrom(root)
}

// dirKey identifies a directory (device and inode).
func dirKey(info fs.FileInfo) [2]uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(st.Dev), st.Ino}
	}
	return [2]uint64{}
}

// isAncestor reports whether the directory info (a link's target) is the
// input root or a directory on the way from it to p: following it would
// walk the tree again, forever.
func isAncestor(root, p string, info fs.FileInfo) bool {
	key := dirKey(info)
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if di, err := os.Stat(dir); err == nil && dirKey(di) == key {
			return true
		}
		if dir == root || dir == filepath.Dir(dir) || !strings.HasPrefix(dir, root) {
			return false
		}
	}
}

// excluded applies arv-put's --exclude rules (PROTOCOL 11.1): a pattern
// without "/" matches a name at any depth; one with "/" matches the whole
// relative path component by component.
func excluded(patterns []string, rel string) bool { return excludedBy(patterns, rel) != "" }

// excludedBy returns the first pattern that excludes rel, or "".
func excludedBy(patterns []string, rel string) string {
	base := path.Base(rel)
	for _, orig := range patterns {
		pat := orig
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, base); ok {
				return orig
			}
			continue
		}
		pat = strings.TrimPrefix(pat, "./")
		if strings.Count(pat, "/") != strings.Count(rel, "/") {
			continue
		}
		if ok, _ := path.Match(pat, rel); ok {
			return orig
		}
	}
	return ""
}

// warnUnusedExcludes says which --exclude patterns matched nothing in the
// walk just made (a typo would otherwise upload what it meant to skip).
func (u *Uploader) warnUnusedExcludes() {
	for _, pat := range u.meta.Options.Excludes {
		if !u.excludeUsed[pat] {
			u.cfg.Warn(fmt.Sprintf("--exclude %q matched nothing", pat))
		}
	}
}

// scan walks the tree. If what it sees matches the recorded plan, the plan
// (and every block already stored) is kept as it is; otherwise the tree is
// planned again (see plan). A new job is planned in one walk.
func (u *Uploader) scan(ctx context.Context) error {
	if err := u.scanTree(ctx); err != nil {
		return err
	}
	u.warnUnusedExcludes()
	return nil
}

func (u *Uploader) scanTree(ctx context.Context) error {
	need, err := u.planNeeded(ctx)
	if err != nil || !need {
		return err
	}
	return u.makePlan(ctx, nil)
}

// planNeeded reports whether the tree must be planned: a job without a
// plan, or one whose tree changed since (a walk compares the fingerprint).
func (u *Uploader) planNeeded(ctx context.Context) (bool, error) {
	u.plannedFilesDone = -1 // set again by a plan made now
	u.report(func(p *Progress) { p.Phase = "scanning" })
	if u.meta.PlanFingerprint == "" {
		return true, nil
	}
	fp := newFingerprint()
	if err := u.walk(ctx, func(e scanEntry) error { fp.add(e); return nil }); err != nil {
		return false, err
	}
	if fp.sum() == u.meta.PlanFingerprint {
		u.meta.FilesTotal = fp.files
		return false, u.saveMeta()
	}
	if !u.replanning { // the retry loop has said why already
		u.cfg.Warn("files changed since the last run; planning the changed files again (unchanged files already stored are not read again)")
	}
	return true, nil
}

// makePlan plans the tree (see plan) and records the plan's fingerprint.
func (u *Uploader) makePlan(ctx context.Context, feed *planFeed) error {
	fp, err := u.plan(ctx, feed)
	if err != nil {
		return err
	}
	u.meta.PlanFingerprint, u.meta.FilesTotal = fp.sum(), fp.files
	return u.saveMeta()
}

// fingerprint digests what a walk saw, to tell whether a plan still
// describes the tree.
type fingerprint struct {
	h     hash.Hash
	files int64
	line  []byte // reused by add
}

func newFingerprint() *fingerprint { return &fingerprint{h: sha256.New()} }

// add digests one entry as the line fmt's "%q %d %d %d %d %v %d\n" of
// rel, size, mtime, ctime, inode, emptyDir and input would (the bytes
// recorded plans were fingerprinted with), without fmt's cost.
func (f *fingerprint) add(e scanEntry) {
	b := strconv.AppendQuote(f.line[:0], e.rel)
	for _, n := range []int64{e.size, e.mtime, e.ctime} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, e.ino, 10)
	b = append(b, ' ')
	b = strconv.AppendBool(b, e.emptyDir)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(e.input), 10)
	b = append(b, '\n')
	f.h.Write(b)
	f.line = b
	if !e.emptyDir {
		f.files++
	}
}

func (f *fingerprint) sum() string { return hex.EncodeToString(f.h.Sum(nil)) }

// sameFile reports whether a planned file is still the file seen now.
func sameFile(size, mtime, ctime int64, ino uint64, e scanEntry) bool {
	return size == e.size && mtime == e.mtime && ctime == e.ctime && ino == e.ino
}

// plan assigns every file range to a block (doc.go has the rule) and
// journals files and blocks in batches. A file whose record from an
// earlier plan still matches (size, mtime, ctime, inode) and whose blocks
// are all stored keeps its ranges; every other file is planned into new
// blocks. Blocks no file references any more are dropped (their content
// stays known by hash). A crash at any point leaves the journal in a state
// the next plan starts from.
func (u *Uploader) plan(ctx context.Context, feed *planFeed) (*fingerprint, error) {
	j := u.cfg.Journal
	fp := newFingerprint()
	// A generation unique to this attempt, so records written by a plan
	// that crashed half-way are never mistaken for confirmed ones.
	gen := max(time.Now().UnixNano(), u.meta.PlanGen+1)
	seq, err := j.NextSeq()
	if err != nil {
		return nil, err
	}
	oldStored := map[int64]bool{} // every block of the earlier plan -> stored
	oldSize := map[int64]int64{}
	if err := j.EachBlock(ctx, func(b BlockRecord) error {
		oldStored[b.Seq] = b.Stored
		if b.Stored {
			oldSize[b.Seq] = b.Size
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if feed != nil {
		feed.start(seq)
	}
	kept := map[int64]bool{}
	// What is planned so far, for the progress report while an upload
	// runs beside the plan: new blocks, and blocks kept (stored already).
	var newBlocks, newBytes, keptBlocks, keptBytes int64
	var filesDone int64 // files whose every block is stored already
	var shown struct{ keptBlocks, keptBytes, filesDone int64 }
	showProgress := func() {
		files, total, blocks := fp.files, newBytes+keptBytes, newBlocks+keptBlocks
		dBlocks, dBytes, dFiles := keptBlocks-shown.keptBlocks, keptBytes-shown.keptBytes, filesDone-shown.filesDone
		shown.keptBlocks, shown.keptBytes, shown.filesDone = keptBlocks, keptBytes, filesDone
		u.report(func(p *Progress) {
			p.FilesTotal, p.BytesTotal, p.BlocksTotal = files, total, blocks
			p.BlocksStored += dBlocks
			p.BytesDone += dBytes
			p.FilesDone += dFiles
		})
	}
	blockSize := u.cfg.blockSize
	hadFiles := false
	errFound := errors.New("found")
	if err := j.EachFile(ctx, func(FileRecord) error { return errFound }); errors.Is(err, errFound) {
		hadFiles = true
	} else if err != nil {
		return nil, err
	}

	// Records are written in batches of about batch files or parts, so
	// that memory holds one batch (and the packed block being filled),
	// whatever the number of files.
	const batch = 4096
	var files []FileRecord
	var blocks []BlockRecord
	var blockParts int // parts in blocks
	var packed *BlockRecord
	flushBlocks := func(force bool) error {
		hungry := feed != nil && feed.hungry.Load()
		if len(blocks) >= batch || blockParts >= batch || ((force || hungry) && len(blocks) > 0) {
			if feed != nil && len(files) > 0 {
				// The files first: an upload beside the plan reads the
				// records of the files of the blocks it stores.
				if err := j.PutFiles(files); err != nil {
					return fmt.Errorf("write journal (is the disk full?): %w", err)
				}
				clear(files)
				files = files[:0]
			}
			if err := j.PutBlocks(blocks); err != nil {
				return fmt.Errorf("write journal (is the disk full?): %w", err)
			}
			clear(blocks) // drop the parts they hold
			blocks, blockParts = blocks[:0], 0
			if feed != nil {
				// Every block below the open packed one is journaled now.
				next := seq
				if packed != nil {
					next = packed.Seq
				}
				feed.publish(next)
				showProgress()
			}
		}
		return nil
	}
	var live *liveBlock // packed, as an upload beside the plan reads it
	closePacked := func() {
		if live != nil {
			live.close()
			live = nil
		}
		if packed != nil {
			blocks = append(blocks, *packed)
			blockParts += len(packed.Parts)
			packed = nil
		}
	}
	reusable := func(prev FileRecord, e scanEntry) bool {
		if prev.EmptyDir || e.emptyDir {
			return prev.EmptyDir == e.emptyDir
		}
		if !sameFile(prev.Size, prev.MtimeNS, prev.CtimeNS, prev.Inode, e) {
			return false
		}
		for _, r := range prev.Ranges {
			if !oldStored[r.Block] {
				return false
			}
		}
		return true
	}
	err = u.walk(ctx, func(e scanEntry) error {
		if u.cfg.planHook != nil {
			u.cfg.planHook(e.rel)
		}
		fp.add(e)
		key := fileKeyOf(e.rel)
		if e.emptyDir {
			key = FileKey(e.rel, "")
		}
		var prev FileRecord
		var ok bool
		if hadFiles { // a new job has no records to look up
			if prev, ok, err = j.File(key); err != nil {
				return err
			}
		}
		var rec FileRecord
		switch {
		case ok && reusable(prev, e):
			rec = prev
			if !e.emptyDir {
				filesDone++ // every block of it is stored
			}
			for _, r := range rec.Ranges {
				if !kept[r.Block] {
					kept[r.Block] = true
					keptBlocks++
					keptBytes += oldSize[r.Block]
				}
			}
		case e.emptyDir:
			rec = FileRecord{Key: key, Path: e.rel, EmptyDir: true}
		default:
			rec = FileRecord{Key: key, Path: e.rel, Size: e.size, MtimeNS: e.mtime, CtimeNS: e.ctime, Inode: e.ino, Mode: e.mode}
			part := Part{Path: e.rel, Input: e.input, FileSize: e.size, MtimeNS: e.mtime, CtimeNS: e.ctime, Inode: e.ino}
			switch {
			case e.size == 0:
				filesDone++ // nothing to store
			case e.size >= blockSize/2:
				for off := int64(0); off < e.size; off += blockSize {
					p := part
					p.FileOffset, p.Length = off, min(blockSize, e.size-off)
					blocks = append(blocks, BlockRecord{Seq: seq, Size: p.Length, Parts: []Part{p}})
					newBlocks++
					newBytes += p.Length
					rec.Ranges = append(rec.Ranges, Range{Block: seq, FileOffset: off, Length: p.Length})
					seq++
				}
			default:
				if packed != nil && (packed.Size+e.size > blockSize || len(packed.Parts) >= maxBlockParts) {
					closePacked()
				}
				if packed == nil {
					packed = &BlockRecord{Seq: seq}
					seq++
					newBlocks++
					if feed != nil {
						live = newLiveBlock(packed.Seq)
						feed.setLive(live)
					}
				}
				rec.Ranges = []Range{{Block: packed.Seq, BlockOffset: packed.Size, Length: e.size}}
				part.Length = e.size
				packed.Parts = append(packed.Parts, part)
				if live != nil {
					live.add(part)
				}
				packed.Size += e.size
				newBytes += e.size
			}
		}
		rec.Gen = gen
		files = append(files, rec)
		if len(files) >= batch {
			if err := j.PutFiles(files); err != nil {
				return fmt.Errorf("write journal (is the disk full?): %w", err)
			}
			clear(files)
			files = files[:0]
		}
		return flushBlocks(false)
	})
	if err != nil {
		return nil, err
	}
	closePacked()
	if err := j.PutFiles(files); err != nil {
		return nil, fmt.Errorf("write journal (is the disk full?): %w", err)
	}
	if err := flushBlocks(true); err != nil {
		return nil, err
	}
	var drop []int64
	for s := range oldStored {
		if !kept[s] {
			drop = append(drop, s)
		}
	}
	if err := j.DeleteBlocks(drop); err != nil {
		return nil, fmt.Errorf("write journal (is the disk full?): %w", err)
	}
	if hadFiles { // else every record is of this plan: none to prune
		if _, err := j.PruneFiles(gen); err != nil {
			return nil, fmt.Errorf("write journal (is the disk full?): %w", err)
		}
	}
	var nblocks, nbytes int64
	if err := j.EachBlock(ctx, func(b BlockRecord) error {
		nblocks++
		nbytes += b.Size
		return nil
	}); err != nil {
		return nil, err
	}
	u.meta.PlanGen, u.meta.BlocksTotal, u.meta.BytesTotal = gen, nblocks, nbytes
	u.plannedFilesDone = filesDone
	if feed != nil {
		showProgress()
	}
	return fp, nil
}

// Survey is what a dry run reports, found in one pass: every file it
// could not read, every path it skipped (symlinks, special files) and
// every path an --exclude left out. Each list keeps its first
// maxSurveyed entries; the counts are whole.
type Survey struct {
	Unreadable, Skipped, Excluded []string
	Counts                        map[string]int // by list: "unreadable", "skipped", "excluded"
}

// maxSurveyed bounds each Survey list (a dry run of a million excluded
// files must not hold them all).
const maxSurveyed = 1000

func (s *Survey) add(list *[]string, entry string) {
	name := map[*[]string]string{&s.Unreadable: "unreadable", &s.Skipped: "skipped", &s.Excluded: "excluded"}[list]
	s.Counts[name]++
	if len(*list) < maxSurveyed {
		*list = append(*list, entry)
	}
}

// skip reports a skipped path: a warning, or in a survey an entry.
func (u *Uploader) skip(warning, entry string) {
	u.skipped++
	if u.survey != nil {
		u.survey.add(&u.survey.Skipped, entry)
		return
	}
	u.cfg.Warn(warning)
}

// Survey plans the tree as a dry run: nothing stops at an unreadable file;
// everything the upload would skip or fail on is listed (see Survey).
func (u *Uploader) Survey(ctx context.Context) (JobMeta, *Survey, error) {
	u.survey = &Survey{Counts: map[string]int{}}
	defer func() { u.survey = nil }()
	meta, err := u.Plan(ctx)
	return meta, u.survey, err
}
