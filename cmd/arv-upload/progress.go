package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
)

// Progress display. While a job runs, runJob publishes its progress every
// --progress-interval (1 s): it reads the engine's snapshot
// (agent.Uploader.Progress, kept current by every change the engine
// reports through Config.OnProgress), makes it the status (the status file
// is written first), then hands it to the run's printers in order: the
// NDJSON records (stdout with --progress json, and --progress-file), then
// the display on stderr (bar, summary or none). Printers show rates from a
// rateMeter over this run's bytes sent (the one estimator; the status
// file's rate_bytes_per_second stays the run's average, as `status`
// prints it). runJob serializes every call, and the warnings printed
// between them (clear first).

// A printer shows the progress of one run.
type printer interface {
	// show shows st, the status just published.
	show(st status)
	// clear makes room on stderr for a message line.
	clear()
	// finish shows the end of the run: st is the last status, err what
	// Run returned, interrupted whether the run was told to stop.
	finish(st status, err error, interrupted bool)
}

const progressHelp = `progress display: auto (a bar on a terminal, else a summary line a minute), bar, json (NDJSON records on stdout, the last with the outcome), summary or none`

func addProgressFlags(fl *pflag.FlagSet) {
	fl.String("progress-file", "", "also append NDJSON progress records to this file (the last one has the outcome)")
	fl.Duration("progress-interval", time.Second, "how often progress is published (status, bar, JSON records)")
}

func checkProgress(mode string) error {
	switch mode {
	case "auto", "bar", "json", "summary", "none":
		return nil
	}
	return usageError{fmt.Errorf("--progress %q: use auto, bar, json, summary or none", mode)}
}

// progressRecord is one NDJSON progress line: the status, and in the last
// line of a run its outcome (done, failed, interrupted) and error.
type progressRecord struct {
	status
	Outcome string `json:"outcome,omitempty"`
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

// jsonPrinter writes one progressRecord a line to w, the last one with the
// outcome. A write that fails is said once to failed (the upload goes on).
type jsonPrinter struct {
	w      io.Writer
	name   string           // what w is, for the message
	failed func(msg string) // says a message on stderr
	said   bool
}

func (j *jsonPrinter) show(st status) { j.write(progressRecord{status: st}) }

func (j *jsonPrinter) clear() {}

func (j *jsonPrinter) finish(st status, err error, interrupted bool) {
	rec := progressRecord{status: st, Outcome: outcomeOf(err, interrupted)}
	if err != nil {
		rec.Error = err.Error()
	}
	j.write(rec)
}

func (j *jsonPrinter) write(rec progressRecord) {
	b, err := json.Marshal(rec)
	if err == nil {
		_, err = fmt.Fprintln(j.w, string(b))
	}
	if err != nil && !j.said {
		j.said = true
		j.failed(fmt.Sprintf("cannot write progress records to %s (%v); the upload goes on", j.name, err))
	}
}

// summaryInterval is how often the summary printer prints a line: often
// enough to see a job move in a log, rarely enough for days of upload.
const summaryInterval = time.Minute

// summaryPrinter prints a line a summaryInterval (for nohup, systemd and
// logs): bytes and files done and the rate, or the retry under way.
type summaryPrinter struct {
	w    io.Writer
	job  string
	now  func() time.Time // time.Now; tests set it
	last time.Time        // when the last line was printed (or the run began)
	rate rateMeter
}

func newSummaryPrinter(w io.Writer, job string) *summaryPrinter {
	return &summaryPrinter{w: w, job: job, now: time.Now, last: time.Now()}
}

func (s *summaryPrinter) show(st status) {
	now := s.now()
	s.rate.add(now, st.BytesSent)
	if now.Sub(s.last) < summaryInterval {
		return
	}
	s.last = now
	line := fmt.Sprintf("arv-upload: job %s: %s of %s, %d of %d files", s.job, humanBytes(st.BytesDone), humanBytes(st.BytesTotal), st.FilesDone, st.FilesTotal)
	if st.Phase == "scanning" {
		line += " planned so far"
	}
	if st.Retrying {
		line += fmt.Sprintf(", retrying at %s (%s)", st.RetryAt.Local().Format("15:04:05"), st.LastError)
	} else if rate := s.rate.perSecond(now); rate > 0 {
		line += fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
	}
	fmt.Fprintln(s.w, line)
}

func (s *summaryPrinter) clear() {}

func (s *summaryPrinter) finish(status, error, bool) {} // runJob says the outcome

// nonePrinter shows nothing (--progress none, and json's display).
type nonePrinter struct{}

func (nonePrinter) show(status)                {}
func (nonePrinter) clear()                     {}
func (nonePrinter) finish(status, error, bool) {}
