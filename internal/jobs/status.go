package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// StateDamaged is the state of a job whose journal is damaged
// (store.ErrDamaged): nothing runs it until a rebuild makes a new one.
const StateDamaged = "damaged"

// Status is a job's status file, JOB.status.json: what the running
// process publishes and `status --json` prints.
type Status struct {
	agent.Progress
	// PID is the running process; 0 once it ended.
	PID int `json:"pid,omitempty"`
	// RateBPS is this run's average: bytes sent over ElapsedSecs (the
	// displays show a sliding window's instead); ETASeconds the bytes left
	// at that rate.
	RateBPS     float64 `json:"rate_bytes_per_second"`
	ETASeconds  float64 `json:"eta_seconds"`
	UpdatedAt   string  `json:"updated_at"`
	ElapsedSecs float64 `json:"elapsed_seconds"`
}

// WriteStatus replaces the status file of job (WriteFileAtomic).
func (d Dir) WriteStatus(job string, st Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return WriteFileAtomic(d.StatusPath(job), b)
}

// ReadStatus reads the status file of job as it is (Status says what is
// true of the job).
func (d Dir) ReadStatus(job string) (Status, error) {
	var st Status
	b, err := os.ReadFile(d.StatusPath(job))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// Status returns what is true of job now: the status file while a live
// process runs the job, else what the journal says. It is "running" only
// while a process holds the journal (after a kill -9 the status file still
// says running: the job is "interrupted"), and StateDamaged when the
// journal is damaged or records no job (MarkDamaged records that).
func (d Dir) Status(job string) (Status, error) {
	st, serr := d.ReadStatus(job)
	if serr != nil {
		st = Status{} // none yet, or unreadable: the journal tells
	}
	if serr == nil && st.State == agent.StateRunning && PIDAlive(st.PID) {
		return st, nil
	}
	st.Job = job
	dbPath := d.JournalPath(job)
	j, err := store.Open(dbPath, 200*time.Millisecond)
	switch {
	case errors.Is(err, store.ErrLocked):
		// Held by a run that has not published yet (after a kill -9, the
		// status file still says running), or by another status.
		if serr != nil || st.State == agent.StateRunning {
			st.State = agent.StateRunning
		}
		return st, nil
	case errors.Is(err, store.ErrDamaged):
		st, _ := d.MarkDamaged(job, err)
		return st, nil
	case err != nil:
		return st, fmt.Errorf("job %s: %w", job, err)
	}
	defer j.Close()
	m, err := j.Meta()
	if err == nil && m.Job == "" {
		err = &store.DamagedError{Path: dbPath, Err: errors.New("it records no job (was its start interrupted?)")}
	}
	if errors.Is(err, store.ErrDamaged) {
		st, _ := d.MarkDamaged(job, err)
		return st, nil
	} else if err != nil {
		return st, fmt.Errorf("job %s: %w", job, err)
	}
	if serr != nil {
		st.Dir, st.State, st.Error = m.Dir, m.State, m.Error
		st.CollectionUUID, st.PDH, st.PartialUUID = m.CollectionUUID, m.PDH, m.PartialUUID
		st.FilesTotal, st.BytesTotal, st.BlocksTotal = m.FilesTotal, m.BytesTotal, m.BlocksTotal
	}
	if st.State == agent.StateRunning {
		// The lock was free: the process that ran it is gone (kill -9).
		st.State = agent.StateInterrupted
	}
	return st, nil
}

// MarkDamaged records in the status file of job that its journal is
// damaged (err, a *store.DamagedError or what made the journal unusable):
// what the file said before, StateDamaged, the error, and the tree and
// partial collection from the record. It returns that status and err as a
// *store.DamagedError. A finished job stays done (its collection is
// complete) and its file is left as it is. A status file that cannot be
// written is said to Warn: Status finds the damage again each time.
func (d Dir) MarkDamaged(job string, err error) (Status, *store.DamagedError) {
	var de *store.DamagedError
	if !errors.As(err, &de) {
		de = &store.DamagedError{Path: d.JournalPath(job), Err: err}
	}
	st, serr := d.ReadStatus(job)
	if serr != nil {
		st = Status{}
	}
	if st.State == agent.StateDone && st.CollectionUUID != "" {
		st.Job = job
		return st, de
	}
	if rec, err := d.ReadRecord(job); err == nil {
		if st.Dir == "" {
			st.Dir = rec.Dir
		}
		if rec.PartialUUID != "" {
			st.PartialUUID = rec.PartialUUID
		}
	}
	st.Job, st.State, st.PID = job, StateDamaged, 0
	st.Error = fmt.Sprintf("%v; what is stored in Keep is safe; run `arv-upload resume --rebuild %s`", de, job)
	st.UpdatedAt = time.Now().UTC().Format(time.RFC3339)
	if err := d.WriteStatus(job, st); err != nil {
		d.warn(fmt.Sprintf("cannot record in the status file that job %s is damaged (%v); its journal says so each time", job, err))
	}
	return st, de
}
