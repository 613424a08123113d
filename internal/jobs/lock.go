package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// PIDAlive reports whether process pid exists.
func PIDAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// LockJournal takes the lock bbolt takes on job's journal (an exclusive
// flock, not waiting), so that nothing opens it while it is replaced. It
// returns store.ErrLocked if a process holds it.
func (d Dir) LockJournal(job string) (release func(), err error) {
	f, err := os.OpenFile(d.JournalPath(job), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, store.ErrLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// ReplaceJournal puts the journal a rebuild made at RebuildPath(job) in
// place of job's damaged one, which is kept as JOB.db.damaged-TIME (a
// hard link made first), then syncs the directory. The caller holds the
// journal's lock (LockJournal). placed says whether the new journal is in
// place (then only the directory's sync failed).
func (d Dir) ReplaceJournal(job string, now time.Time) (kept string, placed bool, err error) {
	dbPath := d.JournalPath(job)
	kept = fmt.Sprintf("%s.damaged-%s", dbPath, now.Format("20060102-150405"))
	if err := os.Link(dbPath, kept); err != nil {
		return "", false, fmt.Errorf("keep the damaged journal of job %s: %w", job, err)
	}
	if err := os.Rename(d.RebuildPath(job), dbPath); err != nil {
		return kept, false, fmt.Errorf("put the new journal of job %s in place: %w", job, err)
	}
	if err := SyncDir(d.Path); err != nil {
		return kept, true, fmt.Errorf("put the new journal of job %s in place: %w", job, err)
	}
	return kept, true, nil
}

// Stop stops the process running job, if a live one does: it leaves the
// abort marker (so that the process says it was aborted), sends SIGTERM
// and waits up to wait for the process to exit. It returns the pid (0 if
// none ran) and whether it is gone.
func (d Dir) Stop(job string, wait time.Duration) (pid int, stopped bool, err error) {
	st, err := d.ReadStatus(job)
	if err != nil || st.State != agent.StateRunning || !PIDAlive(st.PID) {
		return 0, true, nil
	}
	if err := os.WriteFile(d.abortPath(job), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		// The process then says it was interrupted; it stops all the same.
		d.warn(fmt.Sprintf("cannot leave the abort marker of job %s (%v)", job, err))
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return st.PID, false, fmt.Errorf("signal job %s (pid %d): %w", job, st.PID, err)
	}
	for deadline := time.Now().Add(wait); PIDAlive(st.PID) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	return st.PID, !PIDAlive(st.PID), nil
}

// Aborting reports whether `abort` asked the process running job to stop
// (the abort marker exists).
func (d Dir) Aborting(job string) bool {
	_, err := os.Stat(d.abortPath(job))
	return err == nil
}

// Remove removes every file of job: journal, status, record, abort
// marker, a rebuild's journal, kept damaged journals and left-over
// temporary files. Files already gone are not an error.
func (d Dir) Remove(job string) error {
	kept, err := filepath.Glob(filepath.Join(d.Path, job+".db.damaged-*"))
	if err != nil {
		return err
	}
	paths := []string{d.JournalPath(job), d.StatusPath(job), d.RecordPath(job), d.RebuildPath(job), d.abortPath(job),
		d.StatusPath(job) + ".tmp", d.RecordPath(job) + ".tmp"}
	for _, p := range append(paths, kept...) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// RunningOn returns a running job that uploads one of paths, or whose
// paths contain one of them or lie inside one, and its status; "" if
// none.
func (d Dir) RunningOn(paths []string) (string, Status, error) {
	overlap := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || strings.HasPrefix(b, a+string(filepath.Separator))
	}
	jobs, err := d.List()
	if err != nil {
		return "", Status{}, err
	}
	for _, job := range jobs {
		st, err := d.Status(job)
		if err != nil || st.State != agent.StateRunning {
			continue
		}
		theirs := []string{st.Dir}
		if rec, err := d.ReadRecord(job); err == nil {
			for _, in := range rec.Inputs {
				theirs = append(theirs, in.Path)
			}
		}
		for _, p := range paths {
			for _, q := range theirs {
				if q != "" && overlap(p, q) {
					return job, st, nil
				}
			}
		}
	}
	return "", Status{}, nil
}
