package httpx

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestCounter(t *testing.T) {
	c := NewRequestCounter("keepstore")
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	c.Count("PUT", 200)
	c.Count("PUT", 200)
	c.Count("\xff\xfeINVENT", 400)
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, families, 1)
	assert.Equal(t, "arvupload_keepstore_requests_total", families[0].GetName())
	got := map[string]float64{}
	for _, m := range families[0].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		got[labels["method"]+" "+labels["code"]] = m.GetCounter().GetValue()
	}
	assert.Equal(t, map[string]float64{"PUT 200": 2, "other 400": 1}, got)
}
