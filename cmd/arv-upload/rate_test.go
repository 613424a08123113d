package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A run of days keeps only the window's samples (one a publish), and a
// counter that stops growing reads as no rate, not the last one.
func TestRateMeter_windowBoundsSamplesAndStalls(t *testing.T) {
	var m rateMeter
	t0 := time.Now()
	for i := 0; i <= 3600; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), int64(i)<<20)
	}
	assert.LessOrEqual(t, len(m.samples), int(rateWindow/time.Second)+1)
	assert.InDelta(t, 1<<20, m.perSecond(t0.Add(3600*time.Second)), 1)
	for i := 3601; i <= 3630; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), 3600<<20)
	}
	assert.Zero(t, m.perSecond(t0.Add(3630*time.Second)), "stalled for longer than the window")
	assert.Equal(t, "-/s", rateField(m.perSecond(t0.Add(3630*time.Second))))
}
