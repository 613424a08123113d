package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/arv-upload/arv-upload/agent"
	"github.com/arv-upload/arv-upload/keepclient"
	"github.com/arv-upload/arv-upload/store"
)

// stateDir is $XDG_STATE_HOME/arv-upload (default ~/.local/state/arv-upload).
func stateDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the state directory: %w (set XDG_STATE_HOME)", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	dir := filepath.Join(base, "arv-upload")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create state directory %s: %w", dir, err)
	}
	return dir, nil
}

// settingsConf reads ~/.config/arvados/settings.conf (KEY=VALUE lines).
func settingsConf() map[string]string {
	out := map[string]string{}
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".config")
	}
	f, err := os.Open(filepath.Join(base, "arvados", "settings.conf"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// tokenFingerprint identifies a token without revealing it: the UUID of a
// v2 token, else a short SHA-256.
func tokenFingerprint(tok string) string {
	if parts := strings.Split(tok, "/"); len(parts) >= 3 && parts[0] == "v2" {
		return parts[1]
	}
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

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

// status is what `status --json` prints and the running agent publishes.
type status struct {
	agent.Progress
	PID         int     `json:"pid,omitempty"`
	RateBPS     float64 `json:"rate_bytes_per_second"`
	ETASeconds  float64 `json:"eta_seconds"`
	UpdatedAt   string  `json:"updated_at"`
	ElapsedSecs float64 `json:"elapsed_seconds"`
}

func writeStatusFile(path string, st status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b) // temp, fsync, rename, fsync the directory
}

func readStatusFile(path string) (status, error) {
	var st status
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

type uploadFlags struct {
	opts     agent.Options
	retryFor time.Duration
	links    []string
	props    []string
	job      string
	progress string
	dryRun   bool
	bwlimit  string
	rebuild  bool
}

func newStartCommand() *cobra.Command {
	var f uploadFlags
	cmd := &cobra.Command{
		Use:   "start [flags] PATH...",
		Short: "Start uploading directories and files as a new collection",
		Long: `start records a new job in the journal and uploads PATH as one collection.
Interrupt it at any time (Ctrl-C, kill -9, reboot) and continue with
'arv-upload resume'. On success the collection UUID is printed on stdout.

One directory: its contents are the collection. Several paths, or files,
follow arv-put: a directory named without a trailing slash is stored as a
directory of that name, with one its contents go to the collection's root,
and a file goes to the root under its name ('start run1 run2/ sheet.csv').

Network errors and server errors (5xx, 408, 429) are retried, with waits of
up to 3 minutes, for --retry-for (default 24h; 0 fails at once): an outage
of the network or the cluster does not end the job.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkProgress(f.progress); err != nil {
				return err
			}
			for _, l := range f.links {
				spec, err := parseLink(l)
				if err != nil {
					return usageError{err}
				}
				f.opts.Links = append(f.opts.Links, spec)
			}
			for _, p := range f.props {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--property %q: use KEY=VALUE", p)}
				}
				if f.opts.Properties == nil {
					f.opts.Properties = map[string]string{}
				}
				f.opts.Properties[k] = v
			}
			if err := checkExcludes(f.opts.Excludes); err != nil {
				return err
			}
			if f.opts.Threads < 1 {
				return usageError{fmt.Errorf("--threads %d: use 1 or more", f.opts.Threads)}
			}
			if cmd.Flags().Changed("replication") && f.opts.Replication < 1 {
				return usageError{fmt.Errorf("--replication %d: use 1 or more (leave it out for the cluster's default)", f.opts.Replication)}
			}
			if f.retryFor < 0 {
				return usageError{fmt.Errorf("--retry-for %s: use a duration of 0 or more", f.retryFor)}
			}
			f.opts.RetryFor = f.retryFor
			if f.bwlimit != "" {
				n, err := parseRate(f.bwlimit)
				if err != nil {
					return usageError{err}
				}
				f.opts.BWLimit = n
			}
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return usageError{err}
			}
			var inputs []agent.Input
			if st, err := os.Stat(dir); err != nil {
				return usageError{fmt.Errorf("%s: %w (give the directories and files to upload)", args[0], err)}
			} else if len(args) > 1 || !st.IsDir() {
				if inputs, err = agent.ResolveInputs(args); err != nil {
					return usageError{err}
				}
			}
			if f.opts.UpdateCollection != "" {
				if len(f.opts.Links) > 0 || f.opts.ProjectUUID != "" || f.rebuild {
					return usageError{errors.New("--update-collection goes without --link, --project-uuid and --rebuild: the collection is where its owner made it, and an upload slot's token may only read and update it")}
				}
			} else if f.opts.Name == "" {
				// A slot keeps the name its owner gave it unless --name.
				f.opts.Name = filepath.Base(dir)
			}
			sd, err := stateDir()
			if err != nil {
				return err
			}
			if f.rebuild && f.job == "" {
				return usageError{errors.New("--rebuild needs --job JOB, the job whose journal is damaged")}
			}
			if f.job == "" {
				f.job = newJobName(filepath.Base(dir))
				// Two starts in one second: never the same name.
				for i := 2; ; i++ {
					if _, err := os.Stat(filepath.Join(sd, f.job+".db")); err != nil {
						break
					}
					f.job = fmt.Sprintf("%s-%d", strings.TrimSuffix(f.job, fmt.Sprintf("-%d", i-1)), i)
				}
			}
			if !validJobName(f.job) {
				return usageError{fmt.Errorf("--job %q: use letters, digits, '.', '_' and '-'", f.job)}
			}
			dbPath := filepath.Join(sd, f.job+".db")
			if f.rebuild {
				if _, err := os.Stat(dbPath); err != nil {
					return usageError{fmt.Errorf("no job %q (see `arv-upload list`)", f.job)}
				}
				rec := jobRecord{Job: f.job, Dir: dir, Inputs: inputs, Options: f.opts, Created: time.Now().UTC()}
				if old, err := readJobRecord(sd, f.job); err == nil {
					rec.Created, rec.PartialUUID = old.Created, old.PartialUUID
				}
				return rebuildJob(cmd, sd, rec, f.progress)
			}
			if f.dryRun {
				return dryRun(cmd, dir, inputs, f.opts)
			}
			if _, err := os.Stat(dbPath); err == nil {
				return usageError{fmt.Errorf("job %q already exists; continue it with `arv-upload resume %s`, or remove it with `arv-upload abort %s`", f.job, f.job, f.job)}
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			// A tree being uploaded is not started twice.
			if other, st := runningJobOn(sd, dir, inputs); other != "" {
				return usageError{fmt.Errorf("%s is being uploaded by job %s (running, pid %d); follow it with `arv-upload status %s`, or stop it with `arv-upload abort %s`",
					dir, other, st.PID, other, other)}
			}
			// What can be checked before a job exists is checked here, so
			// that a failed start leaves no job behind.
			if err := preflight(cmd.Context(), c, f.opts); err != nil {
				return err
			}
			// The job record first: whatever becomes of the journal from
			// here on, a rebuild knows the job's options.
			created := time.Now().UTC()
			if err := writeJobRecord(sd, jobRecord{Job: f.job, Dir: dir, Inputs: inputs, Options: f.opts, Created: created}); err != nil {
				return err
			}
			j, err := store.Open(dbPath, 0)
			if err != nil {
				return err
			}
			meta := agent.JobMeta{Job: f.job, Dir: dir, Inputs: inputs, Options: f.opts, Created: created, State: agent.StateInterrupted}
			if err := j.SetMeta(meta); err != nil {
				j.Close()
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: job %s: uploading %s\n", f.job, dir)
			return runJob(cmd, c, j, sd, f.job, f.progress)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.opts.Name, "name", "", "collection name (default: the directory's name)")
	fl.StringVar(&f.opts.ProjectUUID, "project-uuid", "", "owner of the collection (user or project UUID)")
	fl.StringVar(&f.opts.UpdateCollection, "update-collection", "", "upload into this existing empty collection (an upload slot) with updates only")
	fl.IntVar(&f.opts.Replication, "replication", 0, "replicas per block (default: the cluster's)")
	fl.StringSliceVar(&f.opts.StorageClasses, "storage-classes", nil, "storage classes, comma-separated")
	fl.StringArrayVar(&f.links, "link", nil, "metadata link CLASS:NAME[=VALUE] on the finished collection (repeatable)")
	fl.StringArrayVar(&f.props, "property", nil, "collection property KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.opts.Excludes, "exclude", nil, "skip files or directories matching this glob (repeatable)")
	fl.BoolVar(&f.opts.FollowLinks, "follow-links", false, "follow symlinks to files and directories, as arv-put does (links back into the tree are skipped); default: skip symlinks")
	fl.IntVar(&f.opts.Threads, "threads", 2, "blocks hashed and uploaded at once (each holds a 64 MiB buffer)")
	fl.StringVar(&f.job, "job", "", "job name (default: generated)")
	fl.StringVar(&f.progress, "progress", "auto", progressHelp)
	addProgressFlags(fl)
	fl.BoolVar(&f.dryRun, "dry-run", false, "plan and report counts, upload nothing")
	fl.DurationVar(&f.retryFor, "retry-for", defaultRetryFor, "keep retrying network and server errors this long (0: fail at once)")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "bandwidth limit in bytes/s on the wire (every replica PUT counts), e.g. 10M; K, M, G suffixes")
	fl.BoolVar(&f.rebuild, "rebuild", false, "make a new journal for the damaged job --job, with these options, from DIR and the job's partial collection (when `resume --rebuild` cannot: the job's record is lost too)")
	return cmd
}

func checkExcludes(patterns []string) error {
	for _, e := range patterns {
		if strings.HasPrefix(e, "/") || strings.Contains(e, "..") {
			return usageError{fmt.Errorf("--exclude %q: patterns must be relative and must not contain ..", e)}
		}
	}
	return nil
}

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
			sd, err := stateDir()
			if err != nil {
				return err
			}
			job, err := pickJob(sd, args)
			if err != nil {
				return err
			}
			if rebuild {
				rec, err := readJobRecord(sd, job)
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
			dbPath := filepath.Join(sd, job+".db")
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

// runJob runs the job in j (closing it) with progress display and the
// status file, and prints the result.
func runJob(cmd *cobra.Command, c *keepclient.Client, j *store.Journal, sd, job, progress string) error {
	defer j.Close()
	meta, _ := j.Meta()
	rec := jobRecord{Job: job, Dir: meta.Dir, Inputs: meta.Inputs, Options: meta.Options, Created: meta.Created, PartialUUID: meta.PartialUUID}
	recErr := writeJobRecord(sd, rec)
	var keepOpts keepclient.KeepOptions
	if env := os.Getenv("ARVADOS_KEEP_SERVICES"); env != "" {
		keepOpts.Services = keepclient.ServicesFromEnv(env)
	}
	keep := keepclient.NewKeep(c, keepOpts)
	errw := cmd.ErrOrStderr()
	var bar *barPrinter
	if progress == "auto" {
		progress = "summary" // a line a minute, for nohup, systemd and logs
		if f, ok := errw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			progress = "bar"
		}
	}
	if progress == "bar" {
		bar = newBarPrinter(errw, job)
		defer bar.stop()
	}
	interval, _ := cmd.Flags().GetDuration("progress-interval")
	if interval <= 0 {
		interval = time.Second
	}
	// NDJSON records: on stdout with --progress json (then stdout holds
	// nothing else), and to --progress-file whatever the display.
	var records []io.Writer
	if progress == "json" {
		records = append(records, cmd.OutOrStdout())
	}
	if path, _ := cmd.Flags().GetString("progress-file"); path != "" {
		pf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open --progress-file %s: %w", path, err)
		}
		defer pf.Close()
		records = append(records, pf)
	}
	lastSummary := time.Now()
	statusErrSaid := false
	statusPath := filepath.Join(sd, job+".status.json")
	start := time.Now()
	var last status
	// out serializes what goes to stderr (the bar, JSON lines, warnings),
	// so that a warning never lands in the middle of the bar.
	var out sync.Mutex
	warn := func(msg string) {
		out.Lock()
		defer out.Unlock()
		if bar != nil {
			bar.clear()
		}
		fmt.Fprintf(errw, "arv-upload: warning: %s\n", msg)
	}
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
			if err := writeJobRecord(sd, rec); err != nil {
				warn(err.Error())
			}
		}
	}
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
			if st.RateBPS > 0 {
				st.ETASeconds = float64(p.BytesTotal-p.BytesDone) / st.RateBPS
			}
		}
		if final {
			st.PID = 0
		}
		last = st
		if err := writeStatusFile(statusPath, st); err != nil && !statusErrSaid {
			// Once: `status` from another window then shows stale figures,
			// the upload itself goes on (the journal is what counts).
			statusErrSaid = true
			if bar != nil {
				bar.clear()
			}
			fmt.Fprintf(errw, "arv-upload: warning: cannot write the status file (%v); `arv-upload status` will lag\n", err)
		}
		if len(records) > 0 {
			rec := progressRecord{status: st}
			if final {
				rec.Outcome = outcomeOf(outcome, cmd.Context().Err() != nil)
				if outcome != nil {
					rec.Error = outcome.Error()
				}
			}
			b, _ := json.Marshal(rec)
			for _, w := range records {
				fmt.Fprintln(w, string(b))
			}
		}
		switch progress {
		case "summary":
			if final || time.Since(lastSummary) < time.Minute {
				break
			}
			lastSummary = time.Now()
			line := fmt.Sprintf("arv-upload: job %s: %s of %s, %d of %d files", job, humanBytes(p.BytesDone), humanBytes(p.BytesTotal), p.FilesDone, p.FilesTotal)
			if p.Retrying {
				line += fmt.Sprintf(", retrying at %s (%s)", p.RetryAt.Local().Format("15:04:05"), p.LastError)
			} else if st.RateBPS > 0 {
				line += fmt.Sprintf(", %s/s", humanBytes(int64(st.RateBPS)))
			}
			fmt.Fprintln(errw, line)
		case "bar":
			if !final {
				bar.update(p)
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
	if bar != nil {
		if runErr == nil {
			bar.update(up.Progress())
		}
		bar.finish(runErr == nil)
	}
	if runErr != nil {
		if cmd.Context().Err() != nil {
			if _, err := os.Stat(filepath.Join(sd, job+".aborting")); err == nil {
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

const progressHelp = `progress display: auto (a bar on a terminal, else a summary line a minute), bar, json (NDJSON records on stdout, the last with the outcome), summary or none`

func addProgressFlags(fl *pflag.FlagSet) {
	fl.String("progress-file", "", "also append NDJSON progress records to this file (the last one has the outcome)")
	fl.Duration("progress-interval", time.Second, "how often progress is published (status, bar, JSON records)")
}

// progressRecord is one NDJSON progress line: the status, and in the last
// line of a run its outcome (done, failed, interrupted) and error.
type progressRecord struct {
	status
	Outcome string `json:"outcome,omitempty"`
}

func checkProgress(mode string) error {
	switch mode {
	case "auto", "bar", "json", "summary", "none":
		return nil
	}
	return usageError{fmt.Errorf("--progress %q: use auto, bar, json, summary or none", mode)}
}

func outcomeOf(err error, interrupted bool) string {
	switch {
	case err == nil:
		return "done"
	case interrupted:
		return "interrupted"
	}
	return "failed"
}

func dryRun(cmd *cobra.Command, dir string, inputs []agent.Input, opts agent.Options) error {
	tmp, err := os.MkdirTemp("", "arv-upload-dry")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	j, err := store.Open(filepath.Join(tmp, "dry.db"), 0)
	if err != nil {
		return err
	}
	defer j.Close()
	j.SetMeta(agent.JobMeta{Job: "dry-run", Dir: dir, Inputs: inputs, Options: opts})
	up, err := agent.New(agent.Config{Journal: j, Warn: func(msg string) { fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: warning: %s\n", msg) }})
	if err != nil {
		return err
	}
	meta, sv, err := up.Survey(cmd.Context())
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "dry run: %d files, %s, %d blocks; nothing uploaded\n", meta.FilesTotal, humanBytes(meta.BytesTotal), meta.BlocksTotal)
	for _, l := range []struct {
		name, what string
		list       []string
	}{
		{"unreadable", "cannot be read (fix their permissions, or leave them out with --exclude)", sv.Unreadable},
		{"skipped", "would be skipped", sv.Skipped},
		{"excluded", "are excluded by --exclude", sv.Excluded},
	} {
		if n := sv.Counts[l.name]; n > 0 {
			fmt.Fprintf(w, "%d %s:\n", n, l.what)
			for _, e := range l.list {
				fmt.Fprintf(w, "  %s\n", e)
			}
			if n > len(l.list) {
				fmt.Fprintf(w, "  ... and %d more\n", n-len(l.list))
			}
		}
	}
	if sv.Counts["unreadable"] > 0 {
		return fmt.Errorf("%d file(s) cannot be read; an upload would stop at the first", sv.Counts["unreadable"])
	}
	return nil
}

func newStatusCommand() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "status [JOB]",
		Short: "Show a job's progress (works while it runs in another process)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir()
			if err != nil {
				return err
			}
			job, err := pickJob(sd, args)
			if err != nil {
				return err
			}
			for {
				st, err := jobStatus(sd, job)
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

// jobStatus reads the status file, and the journal unless the job runs:
// "running" only while a process holds the journal, "damaged" when the
// journal is (or a run found it so).
func jobStatus(sd, job string) (status, error) {
	st, serr := readStatusFile(filepath.Join(sd, job+".status.json"))
	if serr != nil {
		st = status{} // none yet, or unreadable: the journal tells
	}
	if serr == nil && st.State == agent.StateRunning && pidAlive(st.PID) {
		return st, nil
	}
	st.Job = job
	dbPath := filepath.Join(sd, job+".db")
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
		return damagedStatus(sd, job, err), nil
	case err != nil:
		return st, fmt.Errorf("job %s: %w", job, err)
	}
	defer j.Close()
	m, err := j.Meta()
	if err == nil && m.Job == "" {
		err = &store.DamagedError{Path: dbPath, Err: errors.New("it records no job (was its start interrupted?)")}
	}
	if errors.Is(err, store.ErrDamaged) {
		return damagedStatus(sd, job, err), nil
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

// damagedStatus is the status of a job whose journal is damaged; it also
// records that in the status file.
func damagedStatus(sd, job string, err error) status {
	st, _ := markDamaged(sd, job, err)
	return st
}

func printStatus(w io.Writer, st status) {
	fmt.Fprintf(w, "job:    %s (%s)\n", st.Job, st.State)
	fmt.Fprintf(w, "dir:    %s\n", st.Dir)
	fmt.Fprintf(w, "bytes:  %s of %s", humanBytes(st.BytesDone), humanBytes(st.BytesTotal))
	if st.BytesTotal > 0 {
		fmt.Fprintf(w, " (%.1f%%)", 100*float64(st.BytesDone)/float64(st.BytesTotal))
	}
	fmt.Fprintf(w, "\nfiles:  %d of %d done\nblocks: %d of %d stored\n", st.FilesDone, st.FilesTotal, st.BlocksStored, st.BlocksTotal)
	if st.State == agent.StateRunning && st.RateBPS > 0 {
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

func newListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir()
			if err != nil {
				return err
			}
			jobs, err := listJobs(sd)
			if err != nil {
				return err
			}
			var all []status
			active := map[string]time.Time{}
			for _, job := range jobs {
				st, err := jobStatus(sd, job)
				if err != nil {
					st = status{Progress: agent.Progress{Job: job, State: "unknown", Error: err.Error()}}
				}
				all = append(all, st)
				active[job] = lastActivity(sd, job)
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

func newAbortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "abort [JOB]",
		Short: "Stop a job and remove its journal",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := stateDir()
			if err != nil {
				return err
			}
			job, err := pickJob(sd, args)
			if err != nil {
				return err
			}
			if st, err := readStatusFile(filepath.Join(sd, job+".status.json")); err == nil && st.State == agent.StateRunning && pidAlive(st.PID) {
				// The running side tells its user why it stopped.
				os.WriteFile(filepath.Join(sd, job+".aborting"), []byte(strconv.Itoa(os.Getpid())), 0o600)
				syscall.Kill(st.PID, syscall.SIGTERM)
				for i := 0; i < 300 && pidAlive(st.PID); i++ {
					time.Sleep(100 * time.Millisecond)
				}
				if pidAlive(st.PID) {
					return fmt.Errorf("job %s (pid %d) did not stop within 30 s; try again or kill it", job, st.PID)
				}
			}
			errw := cmd.ErrOrStderr()
			j, err := store.Open(filepath.Join(sd, job+".db"), time.Second)
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
				if rec, err := readJobRecord(sd, job); err == nil {
					meta.PartialUUID = rec.PartialUUID
				}
				if st, err := readStatusFile(filepath.Join(sd, job+".status.json")); err == nil {
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
			kept, _ := filepath.Glob(filepath.Join(sd, job+".db.damaged-*"))
			for _, p := range append([]string{job + ".db", job + ".status.json", job + ".job.json", job + ".db.rebuild", job + ".aborting"}, kept...) {
				if err := os.Remove(filepath.Join(sd, filepath.Base(p))); err != nil && !os.IsNotExist(err) {
					return err
				}
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

func listJobs(sd string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(sd, "*.db"))
	if err != nil {
		return nil, err
	}
	var jobs []string
	for _, m := range matches {
		jobs = append(jobs, strings.TrimSuffix(filepath.Base(m), ".db"))
	}
	return jobs, nil
}

// pickJob returns args[0], or the only unfinished job.
func pickJob(sd string, args []string) (string, error) {
	if len(args) == 1 {
		if _, err := os.Stat(filepath.Join(sd, args[0]+".db")); err != nil {
			return "", usageError{fmt.Errorf("no job %q (see `arv-upload list`)", args[0])}
		}
		return args[0], nil
	}
	jobs, err := listJobs(sd)
	if err != nil {
		return "", err
	}
	var open []string
	for _, j := range jobs {
		if st, err := jobStatus(sd, j); err != nil || st.State != agent.StateDone {
			open = append(open, j)
		}
	}
	switch len(open) {
	case 1:
		return open[0], nil
	case 0:
		return "", usageError{errors.New("no unfinished job; name one (see `arv-upload list`)")}
	}
	return "", usageError{fmt.Errorf("several unfinished jobs (%s); name one", strings.Join(open, ", "))}
}

func validJobName(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func newJobName(base string) string {
	var b strings.Builder
	for _, c := range base {
		if validJobName(string(c)) {
			b.WriteRune(c)
		}
		if b.Len() >= 20 {
			break
		}
	}
	return fmt.Sprintf("%s-%s", strings.Trim(b.String(), ".-"), time.Now().Format("0102-150405"))
}

func parseLink(s string) (agent.LinkSpec, error) {
	class, rest, ok := strings.Cut(s, ":")
	if !ok || class == "" || rest == "" {
		return agent.LinkSpec{}, fmt.Errorf("--link %q: use CLASS:NAME or CLASS:NAME=VALUE, e.g. tag:run=42", s)
	}
	if class == "permission" {
		return agent.LinkSpec{}, fmt.Errorf("--link %q: permission links cannot be set here", s)
	}
	name, value, _ := strings.Cut(rest, "=")
	return agent.LinkSpec{Class: class, Name: name, Value: value}, nil
}

func parseRate(s string) (int64, error) {
	orig := s
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--bwlimit %q: use a positive number of bytes/s with an optional K, M or G suffix", orig)
	}
	return int64(n * float64(mult)), nil
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

// preflight checks, before a job exists, what the cluster would refuse
// only later: the token, and that the owner asked for exists and is
// writable (a project or a user).
func preflight(ctx context.Context, c *keepclient.Client, opts agent.Options) error {
	if _, err := c.CurrentUser(ctx); err != nil {
		if errors.Is(err, keepclient.ErrTokenRefused) {
			return fmt.Errorf("the API server refused the token (revoked, expired, or its account deactivated): %w", err)
		}
		return fmt.Errorf("check the token with the API server: %w", err)
	}
	if len(opts.StorageClasses) > 0 || opts.Replication > 0 {
		if err := checkClassesAndReplication(ctx, c, opts); err != nil {
			return err
		}
	}
	if o := opts.ProjectUUID; o != "" {
		res := ""
		switch {
		case strings.Contains(o, "-j7d0g-"):
			res = "groups"
		case strings.Contains(o, "-tpzed-"):
			res = "users"
		default:
			return usageError{fmt.Errorf("--project-uuid %q is not a project (xxxxx-j7d0g-...) or user (xxxxx-tpzed-...) UUID", o)}
		}
		var owner struct {
			CanWrite *bool `json:"can_write"`
		}
		err := c.Call(ctx, http.MethodGet, "arvados/v1/"+res+"/"+url.PathEscape(o), url.Values{"select": {`["uuid","can_write"]`}}, nil, &owner)
		switch {
		case keepclient.IsStatus(err, http.StatusNotFound):
			return usageError{fmt.Errorf("--project-uuid %s: no such project or user, or it is not shared with you", o)}
		case err != nil:
			return fmt.Errorf("check --project-uuid %s: %w", o, err)
		case owner.CanWrite != nil && !*owner.CanWrite:
			return usageError{fmt.Errorf("--project-uuid %s: you may read it but not write to it; ask its owner for can_write, or choose another", o)}
		}
	}
	return nil
}

// lastActivity is when a job last changed: its newest file in the state
// directory (journal, status, record).
func lastActivity(sd, job string) time.Time {
	var t time.Time
	for _, suffix := range []string{".db", ".status.json", ".job.json"} {
		if fi, err := os.Stat(filepath.Join(sd, job+suffix)); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

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
			sd, err := stateDir()
			if err != nil {
				return err
			}
			jobs, err := listJobs(sd)
			if err != nil {
				return err
			}
			var freed int64
			n := 0
			for _, job := range jobs {
				st, err := jobStatus(sd, job)
				if err != nil || st.State != agent.StateDone || time.Since(lastActivity(sd, job)) < olderThan {
					continue
				}
				j, err := store.Open(filepath.Join(sd, job+".db"), 100*time.Millisecond)
				if err != nil {
					continue // in use (a status, a resume): leave it
				}
				j.Close()
				for _, suffix := range []string{".db", ".status.json", ".job.json"} {
					p := filepath.Join(sd, job+suffix)
					fi, err := os.Stat(p)
					if err != nil {
						continue
					}
					if !dryRun {
						if err := os.Remove(p); err != nil {
							return err
						}
					}
					freed += fi.Size()
				}
				n++
				fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: job %s (collection %s): journal removed\n", job, st.CollectionUUID)
			}
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

// runningJobOn returns a running job that uploads dir (or one of inputs),
// or one whose paths contain them or lie inside them.
func runningJobOn(sd, dir string, inputs []agent.Input) (string, status) {
	paths := []string{dir}
	for _, in := range inputs {
		paths = append(paths, in.Path)
	}
	overlap := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || strings.HasPrefix(b, a+string(filepath.Separator))
	}
	jobs, _ := listJobs(sd)
	for _, job := range jobs {
		st, err := jobStatus(sd, job)
		if err != nil || st.State != agent.StateRunning {
			continue
		}
		theirs := []string{st.Dir}
		if rec, err := readJobRecord(sd, job); err == nil {
			for _, in := range rec.Inputs {
				theirs = append(theirs, in.Path)
			}
		}
		for _, p := range paths {
			for _, q := range theirs {
				if q != "" && overlap(p, q) {
					return job, st
				}
			}
		}
	}
	return "", status{}
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

// checkClassesAndReplication refuses storage classes the cluster does not
// define and a replication no set of its keepstores can give, at start
// rather than as a 507 days later. Through a proxy the keepstores are not
// known: replication is then the proxy's to refuse.
func checkClassesAndReplication(ctx context.Context, c *keepclient.Client, opts agent.Options) error {
	cc, err := c.ClusterConfig(ctx)
	if err != nil {
		return fmt.Errorf("read the cluster's configuration: %w", err)
	}
	if len(cc.StorageClasses) > 0 {
		var known []string
		for name := range cc.StorageClasses {
			known = append(known, name)
		}
		sort.Strings(known)
		for _, sc := range opts.StorageClasses {
			if _, ok := cc.StorageClasses[sc]; !ok {
				return usageError{fmt.Errorf("--storage-classes %s: the cluster has no such class (it has: %s)", sc, strings.Join(known, ", "))}
			}
		}
	}
	if opts.Replication > 0 {
		svcs, err := c.KeepServicesAccessible(ctx)
		if err != nil {
			return fmt.Errorf("list the cluster's keep services: %w", err)
		}
		disks := 0
		for _, s := range svcs {
			if s.ServiceType == "proxy" {
				return nil
			}
			if !s.ReadOnly {
				disks++
			}
		}
		if disks > 0 && opts.Replication > disks {
			return usageError{fmt.Errorf("--replication %d: the cluster has %d writable keepstore(s); ask for at most %d", opts.Replication, disks, disks)}
		}
	}
	return nil
}
