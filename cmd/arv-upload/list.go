package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
)

func newListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir(cmd)
			if err != nil {
				return err
			}
			names, err := sd.List()
			if err != nil {
				return err
			}
			var all []status
			active := map[string]time.Time{}
			for _, job := range names {
				st, err := sd.Status(job)
				if err != nil {
					st = status{Progress: agent.Progress{Job: job, State: "unknown", Error: err.Error()}}
				}
				all = append(all, st)
				active[job] = sd.LastActivity(job)
			}
			// Most recently active first: the job you are after is on top.
			sort.SliceStable(all, func(i, k int) bool { return active[all[i].Job].After(active[all[k].Job]) })
			if asJSON {
				if all == nil {
					all = []status{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(all)
			}
			if len(all) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No jobs. Start one with: arv-upload start DIR")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSTATE\tDONE\tACTIVE\tDIR\tCOLLECTION")
			for _, st := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s ago\t%s\t%s\n", st.Job, st.State, humanBytes(st.BytesDone), humanBytes(st.BytesTotal),
					shortDuration(time.Since(active[st.Job])), st.Dir, st.CollectionUUID)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
