package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPruneCommand() *cobra.Command {
	var olderThan time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the journals of finished jobs",
		Long: `prune removes the journal, status and record of every finished job
(its collection stays; only the local bookkeeping goes), with --older-than
only those finished that long ago. Unfinished, running and damaged jobs
are left alone: use 'arv-upload abort JOB' for those.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir(cmd)
			if err != nil {
				return err
			}
			prunable, err := sd.Prunable(olderThan, time.Now())
			if err != nil {
				return err
			}
			var freed int64
			for _, p := range prunable {
				if !dryRun {
					if err := sd.Prune(p); err != nil {
						return err
					}
				}
				freed += p.Bytes
				fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: job %s (collection %s): journal removed\n", p.Job, p.CollectionUUID)
			}
			n := len(prunable)
			verb := "removed"
			if dryRun {
				verb = "would be removed"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: %d finished job(s) %s, %s freed\n", n, verb, humanBytes(freed))
			return nil
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "only jobs inactive this long, e.g. 720h")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be removed, remove nothing")
	return cmd
}
