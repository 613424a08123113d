package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/internal/jobs"
)

// status is a job's status: its status file, what `status --json` prints.
type status = jobs.Status

// stateDir is the state directory, $XDG_STATE_HOME/arv-upload; its
// bookkeeping warnings go to cmd's stderr.
func stateDir(cmd *cobra.Command) (jobs.Dir, error) {
	sd, err := jobs.StateDir()
	sd.Warn = func(msg string) { fmt.Fprintf(cmd.ErrOrStderr(), "arv-upload: warning: %s\n", msg) }
	return sd, err
}

// pickJob returns args[0], or the only unfinished job. A name that is no
// job's (or no valid name: it would point outside the state directory) is
// a usage error.
func pickJob(sd jobs.Dir, args []string) (string, error) {
	if len(args) == 1 {
		if !jobs.ValidName(args[0]) || !sd.Exists(args[0]) {
			return "", usageError{fmt.Errorf("no job %q (see `arv-upload list`)", args[0])}
		}
		return args[0], nil
	}
	open, err := sd.Unfinished()
	if err != nil {
		return "", err
	}
	switch len(open) {
	case 1:
		return open[0], nil
	case 0:
		return "", usageError{errors.New("no unfinished job; name one (see `arv-upload list`)")}
	}
	return "", usageError{fmt.Errorf("several unfinished jobs (%s); name one", strings.Join(open, ", "))}
}
