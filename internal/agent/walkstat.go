package agent

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// statParallelism is how many lstat (and access) calls the walk has in
// flight for one directory's entries: on a network file system each is a
// round trip, on a local one a syscall; the walk itself stays one
// goroutine, in sorted order, so the plan does not depend on it.
const statParallelism = 8

// statAhead holds what the walk will ask about the entries of the
// directories it is in: when it enters a directory, the lstat (and, for a
// regular file, whether it is readable) of the next statWindow entries
// are made in parallel, statParallelism at once, and each is taken out
// when the walk visits the entry; when half of them are taken, the next
// ones are fetched. Memory: statWindow results per directory on the
// current path, and each such directory's listing (os.ReadDir's, which
// filepath.WalkDir holds too).
type statAhead struct {
	parallel int
	m        map[string]*statResult // by path, as the walk names it
	dirs     map[string]*statCursor // by directory (cleaned)
}

// statWindow is how many of a directory's entries are stat'ed ahead of
// the walk.
const statWindow = 1024

// statCursor is how far into a directory's listing statAhead has fetched.
type statCursor struct {
	inDir   string // relative to the input directory
	ents    []fs.DirEntry
	next    int // the first entry not fetched yet
	waiting int // fetched, not taken yet
}

type statResult struct {
	info      fs.FileInfo
	err       error // of lstat
	accessErr error // of access(R_OK), for a regular file
}

func newStatAhead(parallel int) *statAhead {
	return &statAhead{parallel: max(parallel, 1), m: map[string]*statResult{}, dirs: map[string]*statCursor{}}
}

// prefetch starts stat'ing ahead the entries of directory dir (as the
// walk names it) that excludes do not leave out; inDir is dir relative to
// the input directory.
func (s *statAhead) prefetch(dir, inDir string, ents []fs.DirEntry, excludes []string) {
	dir = filepath.Clean(dir) // a followed link is walked as "link/"
	c := &statCursor{inDir: inDir, ents: ents}
	s.dirs[dir] = c
	s.fetch(dir, c, excludes)
}

// fetch stats the next statWindow entries of c.
func (s *statAhead) fetch(dir string, c *statCursor, excludes []string) {
	var paths []string
	for ; c.next < len(c.ents) && len(paths) < statWindow; c.next++ {
		if name := c.ents[c.next].Name(); !excluded(excludes, path.Join(c.inDir, name)) {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	if c.next == len(c.ents) {
		delete(s.dirs, dir) // all fetched
	}
	res := make([]statResult, len(paths))
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(paths) {
				return
			}
			r := &res[i]
			r.info, r.err = os.Lstat(paths[i])
			if r.err == nil && r.info.Mode().IsRegular() {
				r.accessErr = readable(paths[i])
			}
		}
	}
	if n := min(s.parallel, len(paths)); n > 1 {
		var wg sync.WaitGroup
		for range n {
			wg.Go(work)
		}
		wg.Wait()
	} else {
		work()
	}
	for i, p := range paths {
		s.m[p] = &res[i]
	}
	c.waiting += len(paths)
}

// take returns (and forgets) what prefetch found for p, or nil, and
// fetches more of p's directory when half of what was fetched is taken.
// Only the walk's goroutine calls it (and prefetch).
func (s *statAhead) take(p string, excludes []string) *statResult {
	r := s.m[p]
	delete(s.m, p)
	if r == nil {
		return nil
	}
	dir := filepath.Dir(p)
	if c := s.dirs[dir]; c != nil {
		if c.waiting--; c.waiting <= statWindow/2 {
			s.fetch(dir, c, excludes)
		}
	}
	return r
}

// lstat is os.Lstat(p), prefetched if it was; r is the prefetched result
// (nil if none), for access.
func (s *statAhead) lstat(p string, excludes []string) (info fs.FileInfo, r *statResult, err error) {
	if r = s.take(p, excludes); r != nil {
		return r.info, r, r.err
	}
	info, err = os.Lstat(p)
	return info, nil, err
}

// readable reports whether the file at p can be opened for reading: one
// access(2), where an open and a close would be two syscalls and the os
// package's poller setup three more.
func readable(p string) error {
	if err := ignoringEINTR(func() error { return syscall.Access(p, r_OK) }); err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return nil
}

// r_OK is access(2)'s read permission bit (R_OK).
const r_OK = 4
