package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// The summary prints a line a minute, not one a publish, and its rate is
// the window's (this run's recent bytes), not the run's average: after a
// fast minute and a slow one it shows the slow link.
func TestSummaryPrinter(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	s := &summaryPrinter{w: &buf, job: "run", now: func() time.Time { return clock }, last: clock}
	st := status{Progress: agent.Progress{BytesTotal: 100 << 30, FilesTotal: 10}}
	for i := 1; i <= 120; i++ {
		clock = clock.Add(time.Second)
		if i <= 60 {
			st.BytesSent += 10 << 20
		} else {
			st.BytesSent += 1 << 20
		}
		st.BytesDone = st.BytesSent
		s.show(st)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "a line a minute:\n%s", buf.String())
	assert.Equal(t, "arv-upload: job run: 600.0 MiB of 100.0 GiB, 0 of 10 files, 10.0 MiB/s", lines[0])
	assert.Equal(t, "arv-upload: job run: 660.0 MiB of 100.0 GiB, 0 of 10 files, 1.0 MiB/s", lines[1])

	buf.Reset()
	st.Retrying, st.RetryAt, st.LastError = true, clock.Add(time.Minute), "503 Service Unavailable"
	clock = clock.Add(time.Minute)
	s.show(st)
	assert.Contains(t, buf.String(), ", retrying at "+st.RetryAt.Local().Format("15:04:05")+" (503 Service Unavailable)\n")
	buf.Reset()
	s.finish(st, nil, false)
	assert.Empty(t, buf.String(), "the outcome is runJob's to say")
}

// A stalled link: no rate is shown rather than the run's average.
func TestSummaryPrinter_noRateWhenStalled(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Now()
	s := &summaryPrinter{w: &buf, job: "run", now: func() time.Time { return clock }, last: clock}
	st := status{Progress: agent.Progress{BytesTotal: 1 << 30, BytesSent: 64 << 20, BytesDone: 64 << 20}}
	for i := 0; i < 61; i++ {
		clock = clock.Add(time.Second)
		s.show(st)
	}
	assert.Equal(t, "arv-upload: job run: 64.0 MiB of 1.0 GiB, 0 of 0 files\n", buf.String())
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("no space left on device")
}

// NDJSON: a record a publish, the last with the outcome and error; a
// writer that fails is said once, not dropped and not repeated.
func TestJSONPrinter(t *testing.T) {
	var buf bytes.Buffer
	j := &jsonPrinter{w: &buf, name: "stdout", failed: func(string) { t.Fatal("no failure expected") }}
	st := status{Progress: agent.Progress{Job: "run", State: agent.StateRunning, BytesDone: 5}, PID: 42}
	j.show(st)
	st.State, st.PID = agent.StateInterrupted, 0
	j.finish(st, errors.New("context canceled"), true)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var first, last map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &last))
	assert.NotContains(t, first, "outcome")
	assert.Equal(t, float64(42), first["pid"])
	assert.Equal(t, "interrupted", last["outcome"])
	assert.Equal(t, "context canceled", last["error"])

	var said []string
	fw := &failingWriter{}
	j = &jsonPrinter{w: fw, name: "--progress-file p.ndjson", failed: func(msg string) { said = append(said, msg) }}
	j.show(st)
	j.show(st)
	j.finish(st, nil, false)
	assert.Equal(t, 3, fw.n, "every record is tried")
	require.Len(t, said, 1)
	assert.Contains(t, said[0], "cannot write progress records to --progress-file p.ndjson (no space left on device)")
}

// The bar ends at 100% when the run is done, where it stopped otherwise.
func TestBarPrinter_finish(t *testing.T) {
	for _, done := range []bool{true, false} {
		var buf bytes.Buffer
		b := &barPrinter{w: &buf, job: "run", cols: func() int { return 120 }}
		st := status{Progress: agent.Progress{BytesTotal: 100 << 20, BytesDone: 40 << 20, FilesTotal: 4, FilesDone: 1}}
		b.show(st)
		var err error
		if done {
			st.BytesDone, st.FilesDone = 100<<20, 4
		} else {
			err = errors.New("failed")
		}
		b.finish(st, err, false)
		lines := drawn(buf.String())
		last := lines[len(lines)-1]
		if done {
			assert.Contains(t, last, "100%")
			assert.Contains(t, last, "4/4 files")
		} else {
			assert.Contains(t, last, "40%")
		}
		assert.True(t, strings.HasSuffix(buf.String(), "\n"), "the line is ended")
	}
}

// While the plan is still being made, `status` says the totals are so far
// and gives no ETA; afterwards the ETA.
func TestPrintStatus_scanning(t *testing.T) {
	st := status{Progress: agent.Progress{Job: "run", State: agent.StateRunning, Phase: "scanning", BytesTotal: 1 << 30, BytesDone: 1 << 20}, RateBPS: 1 << 20, ETASeconds: 0}
	var buf bytes.Buffer
	printStatus(&buf, st)
	assert.Contains(t, buf.String(), "scanning: the totals are what is planned so far; rate 1.0 MiB/s\n")
	assert.NotContains(t, buf.String(), "ETA")
	st.Phase, st.ETASeconds = "uploading", 1023
	buf.Reset()
	printStatus(&buf, st)
	assert.Contains(t, buf.String(), "rate:   1.0 MiB/s, ETA 17m3s\n")
}
