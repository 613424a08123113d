package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

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
