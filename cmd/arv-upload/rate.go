package main

import (
	"time"
)

// The rate every printer shows (bar, summary) is measured here, one way:
// this run's bytes sent (agent.Progress.BytesSent, so a resume does not
// count what was stored before) over a sliding window, unknown until the
// window spans 2 s.

// rateWindow is the span the rate is measured over: long enough to smooth
// the bursts of 64 MiB blocks, short enough to follow a change of link.
const rateWindow = 20 * time.Second

// rateMeter measures bytes per second over the last rateWindow from
// samples of a growing counter (this run's bytes sent).
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at time.Time
	n  int64
}

func (m *rateMeter) add(at time.Time, n int64) {
	m.samples = append(m.samples, rateSample{at, n})
	cut := 0
	for cut < len(m.samples)-1 && at.Sub(m.samples[cut+1].at) >= rateWindow {
		cut++
	}
	m.samples = m.samples[cut:]
}

// perSecond is the rate over the window, 0 until it spans 2 s.
func (m *rateMeter) perSecond(now time.Time) float64 {
	if len(m.samples) < 2 {
		return 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.at.Sub(first.at).Seconds()
	if span < 2 || last.n <= first.n {
		return 0
	}
	return float64(last.n-first.n) / span
}

// rateField is the rate beside the bar, "-/s" until one is known (a
// 64 MiB block takes a while to be confirmed: 0 B/s would be a lie).
func rateField(rate float64) string {
	if rate <= 0 {
		return "-/s"
	}
	return humanBytes(int64(rate)) + "/s"
}
