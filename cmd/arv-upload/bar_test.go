package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
)

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// drawn returns the visible lines a printer wrote: what follows each \r,
// without ANSI sequences and trailing blanks.
func drawn(out string) []string {
	var lines []string
	for _, seg := range strings.Split(ansiRE.ReplaceAllString(out, ""), "\r") {
		for _, l := range strings.Split(seg, "\n") {
			if l = strings.TrimRight(l, " "); l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// Issue 13.3: at 60, 80 and 200 columns, with a long generated job name
// and large figures, the bar line never reaches the window's width (no
// wrap, no copy left behind), keeps a usable bar, says ETA - until a rate
// is known, and stays at 100% when a re-plan makes the total smaller than
// what is done.
func TestBarPrinter_fitsTheWindow(t *testing.T) {
	job := "sequencing-run-2026-12-02T031502-flowcell-A"
	for _, cols := range []int{60, 80, 200} {
		var buf bytes.Buffer
		clock := time.Now()
		b := &barPrinter{w: &buf, job: job, cols: func() int { return cols }, now: func() time.Time { return clock }}
		p := agent.Progress{BytesTotal: 3 << 40, BytesDone: 1 << 40, FilesTotal: 20000, FilesDone: 7000}
		b.update(p)
		first := drawn(buf.String())
		require.NotEmpty(t, first)
		if cols >= 80 {
			assert.Contains(t, first[len(first)-1], "ETA -", "%d cols: no rate yet", cols)
		}
		for i := 1; i <= 5; i++ {
			p.BytesSent += 200 << 20
			p.BytesDone += 200 << 20
			clock = clock.Add(time.Second)
			b.update(p)
		}
		p.BytesDone = 4 << 40 // more than the (re-planned) total
		b.update(p)
		lines := drawn(buf.String())
		for _, l := range lines {
			assert.Less(t, utf8.RuneCountInString(l), cols, "%d cols: %q", cols, l)
			assert.NotContains(t, l, "133%")
			assert.Regexp(t, `\|.{`+itoa(minBarWidth)+`,}\|`, l, "%d cols: a usable bar in %q", cols, l)
		}
		last := lines[len(lines)-1]
		assert.Contains(t, last, "100%")
		if cols >= 80 {
			assert.Regexp(t, `ETA [0-9]+h[0-9]+m`, strings.Join(lines, "\n"), "%d cols: an ETA once the rate is known", cols)
		}
		if cols >= 200 {
			assert.Contains(t, strings.Join(lines, "\n"), "200.0 MiB/s", "%d cols: the rate of this run", cols)
		}
		if cols >= 200 {
			assert.Contains(t, last, job, "wide: the whole name")
			assert.Contains(t, last, "files")
		} else {
			assert.Contains(t, last, "…", "narrow: the name shortened")
			assert.NotContains(t, last, job)
		}
	}
}

// When the window narrows, the line the terminal wrapped is cleared (the
// cursor goes up over its extra rows) before the next one is drawn.
func TestBarPrinter_clearsWrappedLineOnNarrowing(t *testing.T) {
	var buf bytes.Buffer
	cols := 200
	b := &barPrinter{w: &buf, job: "run", cols: func() int { return cols }}
	p := agent.Progress{BytesTotal: 100 << 30, BytesDone: 1 << 30, FilesTotal: 10, FilesDone: 1}
	b.update(p)
	n := utf8.RuneCountInString(b.last)
	buf.Reset()
	cols = 40
	b.update(p)
	rows := (n + cols - 1) / cols
	assert.Equal(t, rows-1, strings.Count(buf.String(), "\x1b[1A\x1b[K"), "up and clear over %d wrapped rows", rows-1)
	for _, l := range drawn(buf.String()) {
		assert.Less(t, utf8.RuneCountInString(l), cols)
	}
}

// The rate is this run's bytes sent over a sliding window: after a
// resume at 48% it starts from nothing (no 1.2 GiB/s from what was stored
// before), and it follows a slower link once the window has passed.
func TestRateMeter(t *testing.T) {
	var m rateMeter
	t0 := time.Now()
	m.add(t0, 0)
	assert.Zero(t, m.perSecond(t0))
	m.add(t0.Add(time.Second), 10<<20)
	assert.Zero(t, m.perSecond(t0.Add(time.Second)), "under 2 s: no rate yet")
	for i := 2; i <= 10; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), int64(i)*10<<20)
	}
	assert.InDelta(t, 10<<20, m.perSecond(t0.Add(10*time.Second)), 1)
	for i := 11; i <= 40; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), 100<<20+int64(i-10)*(1<<20))
	}
	assert.InDelta(t, 1<<20, m.perSecond(t0.Add(40*time.Second)), 1, "the window follows the slower link")
}

func itoa(n int) string { return strconv.Itoa(n) }

// While the tree is still being planned (the upload runs beside the plan)
// the totals are what is planned so far: the bar says scanning, not an
// ETA that the growing total would make too short; once the plan is over
// the ETA comes back. The summary says the totals are so far.
func TestProgress_scanningShowsNoETA(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Now()
	b := &barPrinter{w: &buf, job: "run", cols: func() int { return 100 }, now: func() time.Time { return clock }}
	p := agent.Progress{Phase: "scanning", BytesTotal: 1 << 30, FilesTotal: 1000}
	for i := 1; i <= 3; i++ {
		p.BytesSent += 64 << 20
		p.BytesDone += 64 << 20
		p.BytesTotal += 1 << 30
		clock = clock.Add(time.Second)
		b.update(p)
	}
	lines := drawn(buf.String())
	require.NotEmpty(t, lines)
	assert.Contains(t, lines[len(lines)-1], "scanning")
	assert.NotContains(t, strings.Join(lines, "\n"), "ETA")
	p.Phase = "uploading"
	clock = clock.Add(time.Second)
	b.update(p)
	lines = drawn(buf.String())
	assert.Regexp(t, `ETA [0-9]+m[0-9]+s`, lines[len(lines)-1])

	var out bytes.Buffer
	s := &summaryPrinter{w: &out, job: "run", now: func() time.Time { return clock }, last: clock.Add(-time.Hour)}
	s.show(status{Progress: agent.Progress{Phase: "scanning", BytesTotal: 1 << 30, FilesTotal: 10}})
	assert.Equal(t, "arv-upload: job run: 0 B of 1.0 GiB, 0 of 10 files planned so far\n", out.String())
}
