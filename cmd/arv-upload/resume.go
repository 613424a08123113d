package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

func newResumeCommand() *cobra.Command {
	var progress, bwlimit string
	var excludes []string
	var threads int
	var rebuild bool
	var retryFor time.Duration
	var change uploadFlags // what resume may change: applied at finish
	cmd := &cobra.Command{
		Use:   "resume [JOB]",
		Short: "Continue an interrupted job with the options it started with",
		Long: `resume continues a job with the options recorded at start. Files changed
since are planned again; files stored and unchanged are not read again.
--exclude adds patterns to the job's (e.g. to leave out an unreadable file);
--bwlimit, --threads and --retry-for replace the job's. --name,
--project-uuid, --replication, --storage-classes, --link and --property
replace the job's too: they apply when the collection is made at the end
(--link and --property replace the whole list when given).

--rebuild is for a job whose journal is damaged: it makes a new journal
from the job's record (JOB.job.json) and its partial collection, which
holds every block stored up to the last checkpoint. Every file is read
again; only the blocks that collection does not hold are sent.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkProgress(progress); err != nil {
				return err
			}
			if err := checkExcludes(excludes); err != nil {
				return err
			}
			var rate int64 = -1 // unchanged
			if bwlimit == "0" {
				rate = 0
			} else if bwlimit != "" {
				var err error
				if rate, err = parseRate(bwlimit); err != nil {
					return usageError{err}
				}
			}
			if threads < 0 || (cmd.Flags().Changed("threads") && threads < 1) {
				return usageError{fmt.Errorf("--threads %d: use 1 or more", threads)}
			}
			if retryFor < 0 {
				return usageError{fmt.Errorf("--retry-for %s: use a duration of 0 or more", retryFor)}
			}
			sd, err := stateDir(cmd)
			if err != nil {
				return err
			}
			job, err := pickJob(sd, args)
			if err != nil {
				return err
			}
			if rebuild {
				rec, err := sd.ReadRecord(job)
				if err != nil {
					return fmt.Errorf("job %s: cannot rebuild its journal: its record is unreadable (%w), and its options were kept only there.\n"+
						"Run `arv-upload start --rebuild --job %s [the options it was started with] DIR` instead", job, err, job)
				}
				rec.Options.Excludes = append(rec.Options.Excludes, excludes...)
				if rate >= 0 {
					rec.Options.BWLimit = rate
				}
				if threads > 0 {
					rec.Options.Threads = threads
				}
				return rebuildJob(cmd, sd, rec, progress)
			}
			dbPath := sd.JournalPath(job)
			j, err := store.Open(dbPath, 0)
			if errors.Is(err, store.ErrLocked) {
				return fmt.Errorf("job %s is running in another process (see `arv-upload status %s`)", job, job)
			} else if errors.Is(err, store.ErrDamaged) {
				return damagedJob(sd, job, err)
			} else if err != nil {
				return err
			}
			if err := checkJournal(cmd, j, dbPath, job); err != nil {
				j.Close()
				if errors.Is(err, store.ErrDamaged) {
					return damagedJob(sd, job, err)
				}
				return err
			}
			meta, err := j.Meta()
			if err != nil {
				j.Close()
				return err
			}
			if meta.State == agent.StateDone {
				j.Close()
				fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: job %s is already done: collection %s (%s)\n", job, meta.CollectionUUID, meta.PDH)
				fmt.Fprintln(cmd.OutOrStdout(), meta.CollectionUUID)
				return nil
			}
			c, err := connect(cmd)
			if err != nil {
				j.Close()
				return err
			}
			if cmd.Flags().Changed("retry-for") {
				meta.Options.RetryFor = retryFor
				if err := j.SetMeta(meta); err != nil {
					j.Close()
					return err
				}
			}
			if changed, err := applyFinishOptions(cmd, &meta.Options, change); err != nil {
				j.Close()
				return err
			} else if changed {
				if meta.CollectionUUID != "" {
					j.Close()
					return usageError{errors.New("the collection is made already; change it with the Arvados tools (arv collection update)")}
				}
				if err := preflight(cmd.Context(), c, meta.Options); err != nil {
					j.Close()
					return err
				}
				if err := j.SetMeta(meta); err != nil {
					j.Close()
					return err
				}
			}
			if len(excludes) > 0 || rate >= 0 || threads > 0 {
				meta.Options.Excludes = append(meta.Options.Excludes, excludes...)
				if rate >= 0 {
					meta.Options.BWLimit = rate
				}
				if threads > 0 {
					meta.Options.Threads = threads
				}
				if err := j.SetMeta(meta); err != nil {
					j.Close()
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: job %s: resuming %s\n", job, meta.Dir)
			return runJob(cmd, c, j, sd, job, progress)
		},
	}
	cmd.Flags().StringVar(&progress, "progress", "auto", progressHelp)
	addProgressFlags(cmd.Flags())
	cmd.Flags().StringArrayVar(&excludes, "exclude", nil, "also skip files or directories matching this glob (repeatable)")
	cmd.Flags().StringVar(&bwlimit, "bwlimit", "", "new bandwidth limit for the job, e.g. 10M (0 for none)")
	cmd.Flags().IntVar(&threads, "threads", 0, "new number of blocks hashed and uploaded at once")
	cmd.Flags().DurationVar(&retryFor, "retry-for", defaultRetryFor, "keep retrying network and server errors this long (0: fail at once)")
	rf := cmd.Flags()
	rf.StringVar(&change.opts.Name, "name", "", "new collection name")
	rf.StringVar(&change.opts.ProjectUUID, "project-uuid", "", "new owner of the collection (user or project UUID)")
	rf.IntVar(&change.opts.Replication, "replication", 0, "new replicas per block")
	rf.StringSliceVar(&change.opts.StorageClasses, "storage-classes", nil, "new storage classes, comma-separated")
	rf.StringArrayVar(&change.links, "link", nil, "metadata links CLASS:NAME[=VALUE] instead of the job's (repeatable)")
	rf.StringArrayVar(&change.props, "property", nil, "collection properties KEY=VALUE instead of the job's (repeatable)")
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "make a new journal for a job whose journal is damaged (see above)")
	return cmd
}

// applyFinishOptions applies to opts what resume was told to change (the
// options used when the collection is made), and reports whether any was.
func applyFinishOptions(cmd *cobra.Command, opts *agent.Options, change uploadFlags) (bool, error) {
	fl := cmd.Flags()
	changed := false
	if fl.Changed("name") {
		opts.Name, changed = change.opts.Name, true
	}
	if fl.Changed("project-uuid") {
		opts.ProjectUUID, changed = change.opts.ProjectUUID, true
	}
	if fl.Changed("replication") {
		if change.opts.Replication < 1 {
			return false, usageError{fmt.Errorf("--replication %d: use 1 or more", change.opts.Replication)}
		}
		opts.Replication, changed = change.opts.Replication, true
	}
	if fl.Changed("storage-classes") {
		opts.StorageClasses, changed = change.opts.StorageClasses, true
	}
	if fl.Changed("link") {
		opts.Links, changed = nil, true
		for _, l := range change.links {
			spec, err := parseLink(l)
			if err != nil {
				return false, usageError{err}
			}
			opts.Links = append(opts.Links, spec)
		}
	}
	if fl.Changed("property") {
		opts.Properties, changed = map[string]string{}, true
		for _, p := range change.props {
			k, v, ok := strings.Cut(p, "=")
			if !ok || k == "" {
				return false, usageError{fmt.Errorf("--property %q: use KEY=VALUE", p)}
			}
			opts.Properties[k] = v
		}
	}
	return changed, nil
}
