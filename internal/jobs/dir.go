package jobs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// Dir is a state directory holding jobs.
type Dir struct {
	// Path is the directory.
	Path string
	// Warn, if set, is told what went wrong in bookkeeping that does not
	// stop the command (a status file that could not be written).
	Warn func(msg string)
}

// StateDir returns $XDG_STATE_HOME/arv-upload (default
// ~/.local/state/arv-upload), creating it (mode 0700) if need be.
func StateDir() (Dir, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return Dir{}, fmt.Errorf("find the state directory: %w (set XDG_STATE_HOME)", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	dir := filepath.Join(base, "arv-upload")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Dir{}, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	return Dir{Path: dir}, nil
}

func (d Dir) warn(msg string) {
	if d.Warn != nil {
		d.Warn(msg)
	}
}

// JournalPath is the path of job's journal, JOB.db.
func (d Dir) JournalPath(job string) string { return filepath.Join(d.Path, job+".db") }

// StatusPath is the path of job's status file, JOB.status.json.
func (d Dir) StatusPath(job string) string { return filepath.Join(d.Path, job+".status.json") }

// RecordPath is the path of job's record, JOB.job.json.
func (d Dir) RecordPath(job string) string { return filepath.Join(d.Path, job+".job.json") }

// RebuildPath is where a rebuild makes job's new journal, JOB.db.rebuild.
func (d Dir) RebuildPath(job string) string { return d.JournalPath(job) + ".rebuild" }

func (d Dir) abortPath(job string) string { return filepath.Join(d.Path, job+".aborting") }

// Exists reports whether job exists (its journal does).
func (d Dir) Exists(job string) bool {
	_, err := os.Stat(d.JournalPath(job))
	return err == nil
}

// List returns the names of the jobs, in the order of their names.
func (d Dir) List() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(d.Path, "*.db"))
	if err != nil {
		return nil, err
	}
	var jobs []string
	for _, m := range matches {
		jobs = append(jobs, strings.TrimSuffix(filepath.Base(m), ".db"))
	}
	return jobs, nil
}

// Unfinished returns the jobs that are not done (a job whose status
// cannot be read counts as unfinished).
func (d Dir) Unfinished() ([]string, error) {
	jobs, err := d.List()
	if err != nil {
		return nil, err
	}
	var open []string
	for _, j := range jobs {
		if st, err := d.Status(j); err != nil || st.State != agent.StateDone {
			open = append(open, j)
		}
	}
	return open, nil
}

// ValidName reports whether s may name a job: 1 to 100 letters, digits,
// '.', '_' and '-', not starting with '.'.
func ValidName(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NewName returns a name for a new job on base (a directory's name): its
// first 20 valid characters and the time, MMDD-hhmmss, with -2, -3... if
// a job of that name exists (two starts in one second).
func (d Dir) NewName(base string, now time.Time) string {
	var b strings.Builder
	for _, c := range base {
		if ValidName(string(c)) {
			b.WriteRune(c)
		}
		if b.Len() >= 20 {
			break
		}
	}
	stem := fmt.Sprintf("%s-%s", strings.Trim(b.String(), ".-"), now.Format("0102-150405"))
	name := stem
	for i := 2; d.Exists(name); i++ {
		name = fmt.Sprintf("%s-%d", stem, i)
	}
	return name
}

// LastActivity is when job last changed: the newest of its journal,
// status file and record.
func (d Dir) LastActivity(job string) time.Time {
	var t time.Time
	for _, p := range []string{d.JournalPath(job), d.StatusPath(job), d.RecordPath(job)} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}
