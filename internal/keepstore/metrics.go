package keepstore

import (
	"github.com/arv-upload/arv-upload/internal/httpx"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the keepstore's Prometheus collectors, in a registry of their
// own so that several Servers can live in one process (tests, devcluster).
type metrics struct {
	reg         *prometheus.Registry
	requests    httpx.RequestCounter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	putDuration prometheus.Histogram
}

func newMetrics(pool *bufferPool, max int) *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		requests: httpx.NewRequestCounter("keepstore"),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "keepstore", Name: "received_bytes_total",
			Help: "Request body bytes read.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "keepstore", Name: "sent_bytes_total",
			Help: "Response body bytes written.",
		}),
		putDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "arvupload", Subsystem: "keepstore", Name: "put_duration_seconds",
			Help:    "Time to handle a block PUT, from request start to response.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms .. 4.4 min
		}),
	}
	buffers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "arvupload", Subsystem: "keepstore", Name: "buffers_in_use",
		Help: "Buffer slots held by requests (a GET holds a block buffer, a PUT its write windows).",
	}, func() float64 { return float64(pool.inUse.Load()) })
	buffersMax := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "arvupload", Subsystem: "keepstore", Name: "buffers_max",
		Help: "Configured maximum of block buffers (MaxBuffers).",
	}, func() float64 { return float64(max) })
	m.reg.MustRegister(m.requests, m.bytesIn, m.bytesOut, m.putDuration, buffers, buffersMax)
	return m
}
