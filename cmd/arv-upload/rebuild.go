package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/jobs"
	"github.com/arv-upload/arv-upload/internal/store"
	"github.com/arv-upload/arv-upload/keepclient"
)

// A damaged journal (store.ErrDamaged) is never used and never replaced
// silently. Every command that meets one says so in one message: the job,
// that what is stored in Keep is safe, and what to run. `resume --rebuild`
// then makes a new journal from the job record (jobs.Record) and the job's
// partial collection, which lists every block stored up to the last
// checkpoint: the tree is planned again (the same plan), every file read
// again, and only the blocks that collection does not hold are sent.

// damagedJob returns the message for a job whose journal is damaged (err
// holds a *store.DamagedError) and records the state in the status file,
// so that status and list show it.
func damagedJob(sd jobs.Dir, job string, err error) error {
	st, de := sd.MarkDamaged(job, err)
	rec, recErr := sd.ReadRecord(job)
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

// damagedJobError is damagedJob's message; it matches store.ErrDamaged.
type damagedJobError struct {
	msg string
	err error
}

func (e damagedJobError) Error() string { return e.msg }
func (e damagedJobError) Unwrap() error { return e.err }

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
func rebuildJob(cmd *cobra.Command, sd jobs.Dir, rec jobs.Record, progress string) error {
	job := rec.Job
	dbPath := sd.JournalPath(job)
	errw := cmd.ErrOrStderr()
	if st, err := sd.ReadStatus(job); err == nil && st.State == agent.StateDone && st.CollectionUUID != "" {
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
	release, err := sd.LockJournal(job)
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
		if st, err := sd.ReadStatus(job); err == nil {
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
	tmp := sd.RebuildPath(job)
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
	kept, placed, err := sd.ReplaceJournal(job, time.Now())
	if err != nil {
		if placed {
			nj.Close()
		}
		return err
	}
	release()
	release = nil
	if err := sd.WriteRecord(rec); err != nil {
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
