package httpx

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestCounter is arvupload_<subsystem>_requests_total{method,code}, the
// request count keepstore and the proxy export. (The API server's has a
// route label too, so it keeps its own.) Register it in the server's
// registry.
type RequestCounter struct{ *prometheus.CounterVec }

// NewRequestCounter returns the request counter of a subsystem
// ("keepstore", "proxy").
func NewRequestCounter(subsystem string) RequestCounter {
	return RequestCounter{prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "arvupload", Subsystem: subsystem, Name: "requests_total",
		Help: "HTTP requests by method and status code.",
	}, []string{"method", "code"})}
}

// Count counts one request; the method label is MethodLabel(method), so
// that invented methods cannot grow the label set.
func (c RequestCounter) Count(method string, status int) {
	c.WithLabelValues(MethodLabel(method), strconv.Itoa(status)).Inc()
}
