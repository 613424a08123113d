package jobs

import (
	"os"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// Prunable is a finished job whose files may go: its collection stays.
type Prunable struct {
	Job            string
	CollectionUUID string
	Files          []string // journal, status file, record: those that exist
	Bytes          int64    // their size
}

// Prunable returns the jobs that are done and inactive for olderThan at
// now (LastActivity), and whose journal no process holds (a status or a
// resume may be reading it). Unfinished, running and damaged jobs are
// never prunable: they are abort's.
func (d Dir) Prunable(olderThan time.Duration, now time.Time) ([]Prunable, error) {
	jobs, err := d.List()
	if err != nil {
		return nil, err
	}
	var out []Prunable
	for _, job := range jobs {
		st, err := d.Status(job)
		if err != nil || st.State != agent.StateDone || now.Sub(d.LastActivity(job)) < olderThan {
			continue
		}
		j, err := store.Open(d.JournalPath(job), 100*time.Millisecond)
		if err != nil {
			continue // in use: leave it
		}
		j.Close()
		p := Prunable{Job: job, CollectionUUID: st.CollectionUUID}
		for _, path := range []string{d.JournalPath(job), d.StatusPath(job), d.RecordPath(job)} {
			if fi, err := os.Stat(path); err == nil {
				p.Files = append(p.Files, path)
				p.Bytes += fi.Size()
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Prune removes p's files.
func (d Dir) Prune(p Prunable) error {
	for _, path := range p.Files {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
