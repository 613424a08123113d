package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/jobs"
	"github.com/arv-upload/arv-upload/internal/store"
	"github.com/arv-upload/arv-upload/keepclient"
)

// keepWriter wires keepclient into the agent's BlockWriter. One
// RateLimiter is shared by every PUT of the run, so --bwlimit caps the
// bytes on the wire, replicas and retries included.
type keepWriter struct {
	keep *keepclient.Keep
	opts keepclient.PutOptions
}

func (k keepWriter) PutBlock(ctx context.Context, data []byte, hash string) (string, int, error) {
	opts := k.opts
	opts.Hash = hash
	res, err := k.keep.Put(ctx, data, opts)
	return res.Locator, res.Replicas, err
}

// defaultRetryFor is how long a job rides out outages unless told: a
// weekend's router reboot or cluster maintenance, not a dead site.
const defaultRetryFor = 24 * time.Hour

// runJob runs the job in j (closing it) with progress display and the
// status file, and prints the result.
func runJob(cmd *cobra.Command, c *keepclient.Client, j *store.Journal, sd jobs.Dir, job, progress string) error {
	defer j.Close()
	meta, err := j.Meta()
	if err != nil {
		return err
	}
	rec := jobs.Record{Job: job, Dir: meta.Dir, Inputs: meta.Inputs, Options: meta.Options, Created: meta.Created, PartialUUID: meta.PartialUUID}
	recErr := sd.WriteRecord(rec)
	var keepOpts keepclient.KeepOptions
	if env := os.Getenv("ARVADOS_KEEP_SERVICES"); env != "" {
		keepOpts.Services = keepclient.ServicesFromEnv(env)
	}
	keep := keepclient.NewKeep(c, keepOpts)
	errw := cmd.ErrOrStderr()
	if progress == "auto" {
		progress = "summary" // a line a minute, for nohup, systemd and logs
		if f, ok := errw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			progress = "bar"
		}
	}
	var display printer = nonePrinter{}
	switch progress {
	case "bar":
		bar := newBarPrinter(errw, job)
		defer bar.stop()
		display = bar
	case "summary":
		display = newSummaryPrinter(errw, job)
	}
	interval, _ := cmd.Flags().GetDuration("progress-interval")
	if interval <= 0 {
		interval = time.Second
	}
	// out serializes what goes to stderr (the bar, JSON lines, warnings),
	// so that a warning never lands in the middle of the bar. say prints
	// a warning with out held.
	var out sync.Mutex
	say := func(msg string) {
		display.clear()
		fmt.Fprintf(errw, "arv-upload: warning: %s\n", msg)
	}
	warn := func(msg string) {
		out.Lock()
		defer out.Unlock()
		say(msg)
	}
	// NDJSON records first: on stdout with --progress json (then stdout
	// holds nothing else), and to --progress-file whatever the display.
	var printers []printer
	if progress == "json" {
		printers = append(printers, &jsonPrinter{w: cmd.OutOrStdout(), name: "stdout", failed: say})
	}
	if path, _ := cmd.Flags().GetString("progress-file"); path != "" {
		pf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open --progress-file %s: %w", path, err)
		}
		defer func() {
			if err := pf.Close(); err != nil {
				warn(fmt.Sprintf("--progress-file %s: %v", path, err))
			}
		}()
		printers = append(printers, &jsonPrinter{w: pf, name: "--progress-file " + path, failed: say})
	}
	printers = append(printers, display)
	statusErrSaid := false
	start := time.Now()
	var last status
	if recErr != nil {
		warn(recErr.Error() + " (it is what a rebuild needs if the journal is damaged)")
	}
	// The job record follows the partial collection as soon as it is
	// created, before the journal records it.
	var recMu sync.Mutex
	onProgress := func(p agent.Progress) {
		recMu.Lock()
		defer recMu.Unlock()
		if p.PartialUUID != "" && p.PartialUUID != rec.PartialUUID {
			rec.PartialUUID = p.PartialUUID
			if err := sd.WriteRecord(rec); err != nil {
				warn(err.Error())
			}
		}
	}
	// publish writes p as the status file and shows it; final ends the
	// printers with the run's outcome.
	publish := func(p agent.Progress, final bool, outcome error) {
		out.Lock()
		defer out.Unlock()
		if p.State == agent.StateDone {
			p.FilesDone = p.FilesTotal
		}
		st := status{Progress: p, PID: os.Getpid(), UpdatedAt: time.Now().UTC().Format(time.RFC3339)}
		st.ElapsedSecs = time.Since(start).Seconds()
		if st.ElapsedSecs > 0 {
			st.RateBPS = float64(p.BytesSent) / st.ElapsedSecs
			if st.RateBPS > 0 && p.Phase != "scanning" { // totals still growing
				st.ETASeconds = float64(p.BytesTotal-p.BytesDone) / st.RateBPS
			}
		}
		if final {
			st.PID = 0
		}
		last = st
		if err := sd.WriteStatus(job, st); err != nil && !statusErrSaid {
			// Once: `status` from another window then shows stale figures,
			// the upload itself goes on (the journal is what counts).
			statusErrSaid = true
			say(fmt.Sprintf("cannot write the status file (%v); `arv-upload status` will lag", err))
		}
		for _, pr := range printers {
			if final {
				pr.finish(st, outcome, cmd.Context().Err() != nil)
			} else {
				pr.show(st)
			}
		}
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	up, err := agent.New(agent.Config{
		Journal: j,
		Keep: keepWriter{keep: keep, opts: keepclient.PutOptions{Replicas: meta.Options.Replication,
			StorageClasses: meta.Options.StorageClasses, RateLimit: keepclient.NewRateLimiter(meta.Options.BWLimit)}},
		API:              c,
		TokenFingerprint: tokenFingerprint(c.Token()), APIHost: c.APIHost(),
		Warn: warn, OnProgress: onProgress,
	})
	if err != nil {
		return err
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-ticker.C:
				publish(up.Progress(), false, nil)
			case <-done:
				return
			}
		}
	}()
	result, runErr := up.Run(cmd.Context())
	close(done)
	<-stopped // publish is not safe for concurrent use
	publish(up.Progress(), true, runErr)
	if runErr != nil {
		if cmd.Context().Err() != nil {
			if sd.Aborting(job) {
				fmt.Fprintf(errw, "arv-upload: job %s was aborted by `arv-upload abort` in another process; its journal is being removed\n", job)
				return runErr
			}
			fmt.Fprintf(errw, "arv-upload: job %s interrupted; continue with `arv-upload resume %s`\n", job, job)
			return runErr
		}
		if errors.Is(runErr, store.ErrDamaged) {
			return damagedJob(sd, job, runErr)
		}
		if errors.Is(runErr, keepclient.ErrTokenRefused) {
			return fmt.Errorf("job %s: the token was refused (revoked, expired, or its account deactivated): %w\n"+
				"(the job is resumable and keeps what is stored: run `arv-upload resume %s` with a valid token in ARVADOS_API_TOKEN or --token)", job, runErr, job)
		}
		return fmt.Errorf("job %s: %w\n(the job is resumable: fix the cause and run `arv-upload resume %s`)", job, runErr, job)
	}
	el := time.Since(start)
	p := last.Progress
	fmt.Fprintf(errw, "arv-upload: job %s done: %d files, %s in %d blocks (%s sent this run) in %s, %s/s\n",
		job, p.FilesTotal, humanBytes(p.BytesTotal), p.BlocksTotal, humanBytes(p.BytesSent), el.Round(time.Millisecond),
		humanBytes(int64(float64(p.BytesSent)/max(el.Seconds(), 0.001))))
	if p.FilesSkipped > 0 || p.FilesChanged > 0 {
		fmt.Fprintf(errw, "arv-upload: %d path(s) skipped (symlinks, special files: see the warnings), %d file(s) changed or vanished while read (planned again)\n",
			p.FilesSkipped, p.FilesChanged)
	}
	fmt.Fprintf(errw, "arv-upload: collection %s, portable data hash %s\n", result.CollectionUUID, result.PDH)
	if progress != "json" { // there stdout is NDJSON; the final record has the UUID
		fmt.Fprintln(cmd.OutOrStdout(), result.CollectionUUID)
	}
	return nil
}
