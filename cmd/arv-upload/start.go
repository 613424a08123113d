package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/jobs"
	"github.com/arv-upload/arv-upload/internal/store"
)

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
			sd, err := stateDir(cmd)
			if err != nil {
				return err
			}
			if f.rebuild && f.job == "" {
				return usageError{errors.New("--rebuild needs --job JOB, the job whose journal is damaged")}
			}
			if f.job == "" {
				f.job = sd.NewName(filepath.Base(dir), time.Now())
			}
			if !jobs.ValidName(f.job) {
				return usageError{fmt.Errorf("--job %q: use letters, digits, '.', '_' and '-'", f.job)}
			}
			dbPath := sd.JournalPath(f.job)
			if f.rebuild {
				if _, err := os.Stat(dbPath); err != nil {
					return usageError{fmt.Errorf("no job %q (see `arv-upload list`)", f.job)}
				}
				rec := jobs.Record{Job: f.job, Dir: dir, Inputs: inputs, Options: f.opts, Created: time.Now().UTC()}
				if old, err := sd.ReadRecord(f.job); err == nil {
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
			paths := []string{dir}
			for _, in := range inputs {
				paths = append(paths, in.Path)
			}
			if other, st, err := sd.RunningOn(paths); err != nil {
				return err
			} else if other != "" {
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
			if err := sd.WriteRecord(jobs.Record{Job: f.job, Dir: dir, Inputs: inputs, Options: f.opts, Created: created}); err != nil {
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
	if err := j.SetMeta(agent.JobMeta{Job: "dry-run", Dir: dir, Inputs: inputs, Options: opts}); err != nil {
		return err
	}
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
