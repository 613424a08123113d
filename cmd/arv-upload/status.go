package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
)

func newStatusCommand() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "status [JOB]",
		Short: "Show a job's progress (works while it runs in another process)",
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
			for {
				st, err := sd.Status(job)
				if err != nil {
					return err
				}
				if asJSON {
					b, _ := json.Marshal(st)
					fmt.Fprintln(cmd.OutOrStdout(), string(b))
				} else {
					printStatus(cmd.OutOrStdout(), st)
				}
				if !watch || st.State != agent.StateRunning {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&watch, "watch", false, "repeat every second while the job runs")
	return cmd
}

func printStatus(w io.Writer, st status) {
	fmt.Fprintf(w, "job:    %s (%s)\n", st.Job, st.State)
	fmt.Fprintf(w, "dir:    %s\n", st.Dir)
	fmt.Fprintf(w, "bytes:  %s of %s", humanBytes(st.BytesDone), humanBytes(st.BytesTotal))
	if st.BytesTotal > 0 {
		fmt.Fprintf(w, " (%.1f%%)", 100*float64(st.BytesDone)/float64(st.BytesTotal))
	}
	fmt.Fprintf(w, "\nfiles:  %d of %d done\nblocks: %d of %d stored\n", st.FilesDone, st.FilesTotal, st.BlocksStored, st.BlocksTotal)
	switch {
	case st.State == agent.StateRunning && st.Phase == "scanning":
		// The upload runs beside the plan: no ETA from a growing total.
		fmt.Fprintf(w, "scanning: the totals are what is planned so far")
		if st.RateBPS > 0 {
			fmt.Fprintf(w, "; rate %s/s", humanBytes(int64(st.RateBPS)))
		}
		fmt.Fprintln(w)
	case st.State == agent.StateRunning && st.RateBPS > 0:
		fmt.Fprintf(w, "rate:   %s/s, ETA %s\n", humanBytes(int64(st.RateBPS)), (time.Duration(st.ETASeconds) * time.Second).String())
	}
	if st.CollectionUUID != "" {
		fmt.Fprintf(w, "collection: %s (%s)\n", st.CollectionUUID, st.PDH)
	} else if st.PartialUUID != "" {
		fmt.Fprintf(w, "partial collection: %s (pins the blocks stored so far)\n", st.PartialUUID)
	}
	if st.Retrying {
		fmt.Fprintf(w, "retrying: at %s (attempt %d, failing since %s): %s\n",
			st.RetryAt.Local().Format("15:04:05"), st.Attempt, st.FailingSince.Local().Format("Jan 2 15:04"), st.LastError)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "error:  %s\n", st.Error)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
