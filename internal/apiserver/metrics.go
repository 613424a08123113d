package apiserver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API server's Prometheus collectors, in a registry of its
// own so that several Servers can live in one process (tests, devcluster).
type metrics struct {
	reg      *prometheus.Registry
	handler  http.Handler
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
}

func newMetrics(st Store, maxConcurrent int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests by route (object IDs as {id}), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "arvupload", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time to handle a request, from its start to the end of the response, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5 ms .. 2.2 min
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "api", Name: "requests_in_flight",
			Help: "API requests in progress (management routes excluded).",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "api", Name: "received_bytes_total",
			Help: "Request body bytes read.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "api", Name: "sent_bytes_total",
			Help: "Response body bytes written.",
		}),
	}
	maxGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "arvupload", Subsystem: "api", Name: "max_concurrent_requests",
		Help: "Configured limit of API requests in progress (MaxConcurrentRequests); more get 503.",
	}, func() float64 { return float64(maxConcurrent) })
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.bytesIn, m.bytesOut, maxGauge, &storeCollector{st: st})
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// storeSizer is what a Store may offer for metrics: objects per resource
// and the bytes it occupies. Reading them must not block writers.
type storeSizer interface {
	sizes() (objects map[string]int, bytes int64, err error)
}

// storeCollector reports the store's sizes at scrape time, when the Store
// is a storeSizer.
type storeCollector struct{ st Store }

var (
	storeObjectsDesc = prometheus.NewDesc("arvupload_api_store_objects",
		"Objects in the store, by resource.", []string{"resource"}, nil)
	storeBytesDesc = prometheus.NewDesc("arvupload_api_store_bytes",
		"Bytes the store occupies (the bbolt file's data size).", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeObjectsDesc
	ch <- storeBytesDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	sz, ok := c.st.(storeSizer)
	if !ok {
		return
	}
	objects, bytes, err := sz.sizes()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(storeObjectsDesc, err)
		return
	}
	for res, n := range objects {
		ch <- prometheus.MustNewConstMetric(storeObjectsDesc, prometheus.GaugeValue, float64(n), res)
	}
	ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(bytes))
}
