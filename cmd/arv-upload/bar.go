package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// The progress bar on a terminal: one line that never outgrows the
// window. progressbar draws the bar; what goes beside it (the job, bytes,
// rate, ETA) is ours, fitted to the width, dropping the least useful
// fields first (files, then rate, then ETA, then the byte counts), with
// the job name shortened. The rate is this run's bytes sent over a
// sliding window (a resume does not count what was stored before), and
// the ETA is "-" until the window has a rate. The bar follows a re-plan's
// new total and never passes 100%. When the window narrows, the line the
// terminal has wrapped is cleared before the next one is drawn.

// minBarWidth keeps a usable bar however long the rest is.
const minBarWidth = 10

// maxBarWidth is the bar's width on a wide terminal.
const maxBarWidth = 40

// barPrinter draws the progress of one run.
type barPrinter struct {
	w     io.Writer
	cols  func() int       // the terminal's width
	now   func() time.Time // time.Now; tests set it
	job   string
	bar   *progressbar.ProgressBar
	width int // the bar's width now
	total int64
	last  string // the last line drawn (to clear it after a resize)
	lastW int    // the terminal width it was drawn at
	rate  rateMeter

	mu      sync.Mutex
	resized chan os.Signal
}

func newBarPrinter(w io.Writer, job string) *barPrinter {
	b := &barPrinter{w: w, job: job, cols: func() int { return 80 }, now: time.Now}
	if f, ok := w.(*os.File); ok {
		fd := int(f.Fd())
		b.cols = func() int {
			if c, _, err := term.GetSize(fd); err == nil && c > 0 {
				return c
			}
			return 80
		}
		b.resized = make(chan os.Signal, 1)
		signal.Notify(b.resized, syscall.SIGWINCH)
	}
	return b
}

// stop releases the window-size signal.
func (b *barPrinter) stop() {
	if b.resized != nil {
		signal.Stop(b.resized)
	}
}

// update draws p (the job's progress).
func (b *barPrinter) update(p agent.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.BytesTotal <= 0 {
		return
	}
	if b.now == nil {
		b.now = time.Now
	}
	now := b.now()
	b.rate.add(now, p.BytesSent)
	cols := b.cols()
	select {
	case <-b.resized:
		b.clearWrapped(cols)
	default:
		if b.lastW != 0 && cols < b.lastW {
			b.clearWrapped(cols)
		}
	}
	desc, width := fitLine(cols, b.job, p, b.rate.perSecond(now)), barWidth(cols)
	if b.bar == nil || width != b.width {
		if b.bar != nil {
			b.bar.Clear()
		}
		b.bar = progressbar.NewOptions64(p.BytesTotal,
			progressbar.OptionSetWriter(b.w), progressbar.OptionSetWidth(width),
			progressbar.OptionSetPredictTime(false), progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(0), progressbar.OptionSetRenderBlankState(false),
			progressbar.OptionSetDescription(desc))
		b.width, b.total = width, p.BytesTotal
	}
	if p.BytesTotal != b.total {
		b.bar.ChangeMax64(p.BytesTotal) // planned again
		b.total = p.BytesTotal
	}
	b.bar.Set64(min(p.BytesDone, p.BytesTotal)) // a re-plan changes the total, not past 100%
	b.bar.Describe(desc)
	b.last, b.lastW = desc+" 100% |"+strings.Repeat(" ", width)+"|", cols
}

// clearWrapped clears what the last line occupies once the terminal
// reflowed it to cols columns (it may now span several rows).
func (b *barPrinter) clearWrapped(cols int) {
	n := utf8.RuneCountInString(b.last)
	rows := 1
	if cols > 0 && n > 0 {
		rows = (n + cols - 1) / cols
	}
	var sb strings.Builder
	sb.WriteString("\r\033[K")
	for i := 1; i < rows; i++ {
		sb.WriteString("\033[1A\033[K")
	}
	io.WriteString(b.w, sb.String())
	b.bar = nil // drawn anew at the new width
}

// clear removes the bar so that a message can be printed.
func (b *barPrinter) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.bar.Clear()
	}
}

// show draws st's progress (printer).
func (b *barPrinter) show(st status) { b.update(st.Progress) }

// finish draws the last status if the run is done and ends the line
// (printer).
func (b *barPrinter) finish(st status, err error, _ bool) {
	if err == nil {
		b.update(st.Progress)
	}
	b.end(err == nil)
}

// end leaves the bar as it is (at 100% when done) and ends the line.
func (b *barPrinter) end(done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		if done {
			b.bar.Finish()
		} else {
			b.bar.Exit() // where the job stopped, not at 100%
		}
		fmt.Fprintln(b.w)
	}
}

// barWidth is the bar's width in a window of cols columns: a quarter of
// it, within minBarWidth..maxBarWidth, so that it changes only when the
// window does (a new bar is a visible redraw).
func barWidth(cols int) int { return min(maxBarWidth, max(minBarWidth, cols/4)) }

// fitLine returns the text beside the bar, so that the whole line (text,
// " NNN% |", the bar, "|") stays within cols-1 columns: fields are
// dropped from the end (least useful last), then the name is shortened.
func fitLine(cols int, job string, p agent.Progress, rate float64) string {
	eta := "ETA -"
	if rate > 0 && p.BytesTotal > p.BytesDone {
		eta = "ETA " + shortDuration(time.Duration(float64(p.BytesTotal-p.BytesDone)/rate*float64(time.Second)))
	} else if p.BytesDone >= p.BytesTotal {
		eta = "ETA 0s"
	}
	if p.Phase == "scanning" {
		// The totals are what is planned so far: no ETA from them yet.
		eta = "scanning"
	}
	if p.Retrying {
		eta = "retrying at " + p.RetryAt.Local().Format("15:04:05")
	}
	fields := []string{
		fmt.Sprintf("%s/%s", humanBytes(min(p.BytesDone, p.BytesTotal)), humanBytes(p.BytesTotal)),
		eta,
		rateField(rate),
		fmt.Sprintf("%d/%d files", min(p.FilesDone, p.FilesTotal), p.FilesTotal),
	}
	const overhead = 1 + 5 + 2 + 1 // " " "100%" " |" "|", plus the last column left free
	room := max(1, cols-1-overhead-barWidth(cols))
	name := shorten(job, max(12, cols/6))
	for n := len(fields); n > 0; n-- {
		for _, nm := range []string{job, name} { // the whole name when it fits
			if desc := strings.Join(append([]string{nm}, fields[:n]...), " "); utf8.RuneCountInString(desc) <= room {
				return desc
			}
		}
	}
	return shorten(name, room)
}

// shorten cuts s to at most n runes, marking the cut with "…".
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n <= 1 {
		return string(r[:max(n, 0)])
	}
	return string(r[:n-1]) + "…"
}

// shortDuration prints d as 3h05m, 12m30s or 45s.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= 100*time.Hour:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
