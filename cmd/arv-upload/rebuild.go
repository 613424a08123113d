package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/agent"
	"github.com/arv-upload/arv-upload/keepclient"
	"github.com/arv-upload/arv-upload/store"
)

// A damaged journal (store.ErrDamaged) is never used and never replaced
// silently. Every command that meets one says so in one message: the job,
// that what is stored in Keep is safe, and what to run. `resume --rebuild`
// then makes a new journal from the job record below and the job's partial
// collection, which lists every block stored up to the last checkpoint:
// the tree is planned again (the same plan), every file read again, and
// only the blocks that collection does not hold are sent.

// stateDamaged is the state status and list show for a job whose journal
// is damaged.
const stateDamaged = "damaged"

// jobRecord is the job record, JOB.job.json beside the journal: what a
// rebuild needs that only the journal held otherwise. It is written whole
// at the start of every run (so it follows resume's option changes) and
// whenever the job's partial collection changes.
type jobRecord struct {
	Job         string        `json:"job"`
	Dir         string        `json:"dir"`
	Inputs      []agent.Input `json:"inputs,omitempty"`
	Options     agent.Options `json:"options"`
	Created     time.Time     `json:"created"`
	PartialUUID string        `json:"partial_uuid,omitempty"`
}

func jobRecordPath(sd, job string) string { return filepath.Join(sd, job+".job.json") }

func writeJobRecord(sd string, r jobRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(jobRecordPath(sd, r.Job), b); err != nil {
		return fmt.Errorf("write job record of %s: %w", r.Job, err)
	}
	return nil
}

func readJobRecord(sd, job string) (jobRecord, error) {
	var r jobRecord
	b, err := os.ReadFile(jobRecordPath(sd, job))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return jobRecord{}, fmt.Errorf("read %s: %w", jobRecordPath(sd, job), err)
	}
	if r.Job != job || r.Dir == "" {
		return jobRecord{}, fmt.Errorf("read %s: it is not the record of job %s", jobRecordPath(sd, job), job)
	}
	return r, nil
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync
// the directory, so that a crash leaves the old content or the new.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// damagedJob returns the message for a job whose journal is damaged (err
// holds a *store.DamagedError) and records the state in the status file,
// so that status and list show it.
func damagedJob(sd, job string, err error) error {
	st, de := markDamaged(sd, job, err)
	rec, recErr := readJobRecord(sd, job)
	var b strings.Builder
	fmt.Fprintf(&b, "job %s: %v.\n", job, de)
	if st.State == agent.StateDone {
		fmt.Fprintf(&b, "The job finished: collection %s (%s) is safe and complete; nothing is left to do.\n"+
			"Run `arv-upload abort %s` to remove the job's files (the collection stays).", st.CollectionUUID, st.PDH, job)
		return damagedJobError{msg: b.String(), err: de}
	}
	sends := "sends only the blocks its partial collection does not hold"
	if st.PartialUUID != "" {
		fmt.Fprintf(&b, "What is already stored in Keep is safe: partial collection %s keeps every block stored up to the job's last checkpoint.\n", st.PartialUUID)
	} else {
		b.WriteString("What is already stored in Keep is safe, but no checkpoint has listed it yet (the first comes a minute into a run), so it is sent again.\n")
		sends = "sends their blocks"
	}
	if recErr == nil {
		fmt.Fprintf(&b, "Run `arv-upload resume --rebuild %s` to make a new journal: it reads the files of %s again and %s.", job, rec.Dir, sends)
	} else {
		dir := "DIR"
		if st.Dir != "" {
			dir = st.Dir
		}
		fmt.Fprintf(&b, "Its options were kept only in the journal: run `arv-upload start --rebuild --job %s [the options it was started with] %s` to make a new journal: it reads the files again and %s.", job, dir, sends)
	}
	return damagedJobError{msg: b.String(), err: de}
}

// markDamaged writes the status file of a job whose journal is damaged
// (what it said before, state "damaged", the error) and returns it. A
// finished job stays done: its collection is complete.
func markDamaged(sd, job string, err error) (status, *store.DamagedError) {
	var de *store.DamagedError
	if !errors.As(err, &de) {
		de = &store.DamagedError{Path: filepath.Join(sd, job+".db"), Err: err}
	}
	path := filepath.Join(sd, job+".status.json")
	st, serr := readStatusFile(path)
	if serr != nil {
		st = status{}
	}
	if st.State == agent.StateDone && st.CollectionUUID != "" {
		st.Job = job
		return st, de
	}
	if rec, err := readJobRecord(sd, job); err == nil {
		if st.Dir == "" {
			st.Dir = rec.Dir
		}
		if rec.PartialUUID != "" {
			st.PartialUUID = rec.PartialUUID
		}
	}
	st.Job, st.State, st.PID = job, stateDamaged, 0
	st.Error = fmt.Sprintf("%v; what is stored in Keep is safe; run `arv-upload resume --rebuild %s`", de, job)
	st.UpdatedAt = time.Now().UTC().Format(time.RFC3339)
	writeStatusFile(path, st)
	return st, de
}

// damagedJobError is damagedJob's message; it matches store.ErrDamaged.
type damagedJobError struct {
	msg string
	err error
}

func (e damagedJobError) Error() string { return e.msg }
func (e damagedJobError) Unwrap() error { return e.err }

// lockJournal takes the lock bbolt takes on a journal (an exclusive
// flock), so that nothing opens the damaged journal while it is replaced.
func lockJournal(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
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

// findPartial looks for the job's partial collection by its name (see
// agent's checkpoint) among owner's collections, for a job whose record
// does not name it. It returns "" if there is none.
func findPartial(cmd *cobra.Command, c *keepclient.Client, job, owner string) (string, error) {
	suffix := fmt.Sprintf("(partial upload, arv-upload job %s)", job)
	if owner == "" {
		u, err := c.CurrentUser(cmd.Context())
		if err != nil {
			return "", fmt.Errorf("get current user: %w", err)
		}
		owner = u.UUID
	}
	l, err := c.ListCollections(cmd.Context(), keepclient.ListOptions{
		Filters: [][]any{{"owner_uuid", "=", owner}, {"name", "like", "%" + suffix}},
		Select:  []string{"uuid", "name"},
	})
	if err != nil {
		return "", fmt.Errorf("look for the partial collection of job %s: %w", job, err)
	}
	var found []string
	for _, coll := range l.Items {
		if strings.HasSuffix(coll.Name, suffix) {
			found = append(found, coll.UUID)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("job %s has several partial collections (%s); trash those that are not this job's and run the rebuild again", job, strings.Join(found, ", "))
}

// rebuildJob replaces the damaged journal of rec.Job by a new one made
// from rec and the job's partial collection, then runs the job.
func rebuildJob(cmd *cobra.Command, sd string, rec jobRecord, progress string) error {
	job := rec.Job
	dbPath := filepath.Join(sd, job+".db")
	errw := cmd.ErrOrStderr()
	if st, err := readStatusFile(filepath.Join(sd, job+".status.json")); err == nil && st.State == agent.StateDone && st.CollectionUUID != "" {
		return usageError{fmt.Errorf("job %s finished: collection %s (%s); there is nothing to rebuild (`arv-upload abort %s` removes the job's files, the collection stays)", job, st.CollectionUUID, st.PDH, job)}
	}
	j, err := store.Open(dbPath, 0)
	switch {
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("job %s is running in another process (see `arv-upload status %s`)", job, job)
	case err == nil:
		err = checkJournal(cmd, j, dbPath, job)
		j.Close()
		if err == nil {
			return usageError{fmt.Errorf("the journal of job %s is sound; continue with `arv-upload resume %s` (--rebuild is for a damaged journal)", job, job)}
		}
		if !errors.Is(err, store.ErrDamaged) {
			return err
		}
	case !errors.Is(err, store.ErrDamaged):
		return err
	}
	release, err := lockJournal(dbPath)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("job %s is running in another process (see `arv-upload status %s`)", job, job)
	} else if err != nil {
		return fmt.Errorf("lock the journal of job %s: %w", job, err)
	}
	defer func() {
		if release != nil {
			release()
		}
	}()
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	if rec.PartialUUID == "" {
		if st, err := readStatusFile(filepath.Join(sd, job+".status.json")); err == nil {
			rec.PartialUUID = st.PartialUUID
		}
	}
	if rec.PartialUUID == "" {
		if rec.PartialUUID, err = findPartial(cmd, c, job, rec.Options.ProjectUUID); err != nil {
			return err
		}
	}

	// The new journal is made apart and put in the damaged one's place
	// only when it holds what the partial collection holds: a crash
	// before leaves the damaged journal (rebuild again), after it a
	// journal a resume continues.
	tmp := dbPath + ".rebuild"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	nj, err := store.Open(tmp, 0)
	if err != nil {
		return err
	}
	placed := false
	defer func() {
		if !placed {
			nj.Close()
			os.Remove(tmp)
		}
	}()
	meta := agent.JobMeta{Job: job, Dir: rec.Dir, Inputs: rec.Inputs, Options: rec.Options, Created: rec.Created, State: agent.StateInterrupted, PartialUUID: rec.PartialUUID}
	if err := nj.SetMeta(meta); err != nil {
		return fmt.Errorf("write journal (is the disk full?): %w", err)
	}
	adopted := 0
	if rec.PartialUUID != "" {
		adopted, err = agent.AdoptPartial(cmd.Context(), nj, c, rec.PartialUUID)
		if keepclient.IsStatus(err, http.StatusNotFound) {
			fmt.Fprintf(errw, "arv-upload: warning: job %s: partial collection %s is gone; every block will be sent again\n", job, rec.PartialUUID)
			err = nil
			meta.PartialUUID, rec.PartialUUID = "", ""
			if err := nj.SetMeta(meta); err != nil {
				return fmt.Errorf("write journal (is the disk full?): %w", err)
			}
		}
		if err != nil {
			return fmt.Errorf("job %s: %w (the damaged journal is unchanged; run the rebuild again)", job, err)
		}
	}
	kept := fmt.Sprintf("%s.damaged-%s", dbPath, time.Now().Format("20060102-150405"))
	if err := os.Link(dbPath, kept); err != nil {
		return fmt.Errorf("keep the damaged journal of job %s: %w", job, err)
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return fmt.Errorf("put the new journal of job %s in place: %w", job, err)
	}
	placed = true
	if err := syncDir(sd); err != nil {
		nj.Close()
		return fmt.Errorf("put the new journal of job %s in place: %w", job, err)
	}
	release()
	release = nil
	if err := writeJobRecord(sd, rec); err != nil {
		fmt.Fprintf(errw, "arv-upload: warning: %v\n", err)
	}
	if rec.PartialUUID != "" {
		fmt.Fprintf(errw, "arv-upload: job %s: new journal made (the damaged one is kept as %s); the %d blocks partial collection %s holds are not sent again\n", job, kept, adopted, rec.PartialUUID)
	} else {
		fmt.Fprintf(errw, "arv-upload: job %s: new journal made (the damaged one is kept as %s); no partial collection was saved, so every block is sent again\n", job, kept)
	}
	fmt.Fprintf(errw, "arv-upload: job %s: resuming %s\n", job, rec.Dir)
	return runJob(cmd, c, nj, sd, job, progress)
}

// checkJournal checks a journal for a run: it must record this job and
// pass the full check (store.Journal.Check).
func checkJournal(cmd *cobra.Command, j *store.Journal, path, job string) error {
	meta, err := j.Meta()
	if err != nil {
		return err
	}
	switch {
	case meta.Job == "" || meta.Dir == "":
		return &store.DamagedError{Path: path, Err: errors.New("it records no job (was its start interrupted?)")}
	case meta.Job != job:
		return &store.DamagedError{Path: path, Err: fmt.Errorf("it records job %q", meta.Job)}
	}
	return j.Check(cmd.Context())
}
