package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
	"github.com/arv-upload/arv-upload/keepclient"
)

func newAbortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "abort [JOB]",
		Short: "Stop a job and remove its journal",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir(cmd)
			if err != nil {
				return err
			}
			job, err := pickJob(sd, args)
			if err != nil {
				return err
			}
			// The running side tells its user why it stopped.
			if pid, stopped, err := sd.Stop(job, 30*time.Second); err != nil {
				return err
			} else if !stopped {
				return fmt.Errorf("job %s (pid %d) did not stop within 30 s; try again or kill it", job, pid)
			}
			errw := cmd.ErrOrStderr()
			j, err := store.Open(sd.JournalPath(job), time.Second)
			if errors.Is(err, store.ErrLocked) {
				return fmt.Errorf("job %s is still running in another process; stop it first (Ctrl-C in its terminal)", job)
			}
			var meta agent.JobMeta
			if err == nil {
				meta, err = j.Meta()
				j.Close()
			}
			damaged := errors.Is(err, store.ErrDamaged)
			if damaged {
				// What the job record and the status file know; the
				// partial collection is trashed only if it still is one
				// (a finished job's collection is that one, renamed).
				meta = agent.JobMeta{}
				if rec, err := sd.ReadRecord(job); err == nil {
					meta.PartialUUID = rec.PartialUUID
				}
				if st, err := sd.ReadStatus(job); err == nil {
					if meta.PartialUUID == "" {
						meta.PartialUUID = st.PartialUUID
					}
					meta.CollectionUUID = st.CollectionUUID
				}
			} else if err != nil {
				return err
			}
			if meta.PartialUUID != "" && meta.CollectionUUID == "" {
				fmt.Fprintf(errw, "arv-upload: partial collection %s %s\n", meta.PartialUUID, trashPartial(cmd, job, meta.PartialUUID, damaged))
			}
			if meta.FinishingUUID != "" && meta.CollectionUUID == "" {
				// Created at finish and not named yet: not a result.
				fmt.Fprintf(errw, "arv-upload: unfinished collection %s %s\n", meta.FinishingUUID, trashPartial(cmd, job, meta.FinishingUUID, false))
			}
			if err := sd.Remove(job); err != nil {
				return err
			}
			fmt.Fprintf(errw, "arv-upload: job %s aborted and its journal removed\n", job)
			return nil
		},
	}
}

// trashPartial trashes the partial collection of an aborted job: it only
// pins blocks of a job that will not finish, and Keep can then reclaim
// them. Known from a damaged journal's side files only (unsure), it is
// trashed only if its name still says it is partial: a finished job's
// collection is the partial one, renamed. It returns what happened.
func trashPartial(cmd *cobra.Command, job, uuid string, unsure bool) string {
	c, err := connect(cmd)
	if err != nil {
		return "left in place (" + err.Error() + "); delete it to let Keep reclaim the blocks"
	}
	if unsure {
		coll, err := c.GetCollection(cmd.Context(), uuid)
		if err == nil && !strings.HasSuffix(coll.Name, fmt.Sprintf("(partial upload, arv-upload job %s)", job)) {
			return "left in place: it is not a partial collection any more (the job finished)"
		}
	}
	err = c.Call(cmd.Context(), http.MethodDelete, "arvados/v1/collections/"+uuid, nil, nil, nil)
	if err != nil && !keepclient.IsStatus(err, http.StatusNotFound) {
		return "left in place (" + err.Error() + "); delete it to let Keep reclaim the blocks"
	}
	return "trashed"
}
