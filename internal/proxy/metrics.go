package proxy

import (
	"github.com/arv-upload/arv-upload/internal/httpx"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus collectors, in their own registry so
// that several Servers (tests, devcluster) can live in one process.
type metrics struct {
	reg            *prometheus.Registry
	requests       httpx.RequestCounter
	bytesIn        prometheus.Counter
	replicasStored prometheus.Counter
	upstreamErrors prometheus.Counter
	tokenCache     *prometheus.CounterVec
	inFlight       prometheus.Gauge
	queued         prometheus.Gauge
	refused        *prometheus.CounterVec
	buffers        prometheus.Gauge
	windows        prometheus.Gauge
	modes          *prometheus.CounterVec
	bufferBytes    prometheus.Gauge
	spoolDepth     prometheus.Gauge
	auditDelivered prometheus.Counter
	auditFailed    prometheus.Counter
	auditRefused   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		requests: httpx.NewRequestCounter("proxy"),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "received_bytes_total",
			Help: "Block bytes received from clients (complete bodies only).",
		}),
		replicasStored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "replicas_stored_total",
			Help: "Block replicas confirmed by the keepstores.",
		}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "upstream_errors_total",
			Help: "Failed upstream keepstore writes (one per failing service attempt).",
		}),
		tokenCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "token_cache_total",
			Help: "Token cache lookups by result (hit or miss).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "puts_in_flight",
			Help: "Block writes in progress.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "puts_queued",
			Help: "Block writes waiting for an upload slot.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "puts_refused_total",
			Help: "Block writes refused with 503 by admission, by reason (busy, user_limit, queue_timeout, shutdown, client_gone).",
		}, []string{"reason"}),
		buffers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "block_buffers",
			Help: "Block buffers the proxy has made (never more than its MaxConcurrent; they are reused, not freed).",
		}),
		bufferBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "block_buffer_bytes",
			Help: "Bytes of the block buffers made (64 MiB each; pages count in RSS once a block has used them).",
		}),
		windows: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "stream_windows",
			Help: "Stream windows (1 MiB each) the proxy has made (never more than its MaxConcurrent; reused, not freed).",
		}),
		modes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "block_writes_total",
			Help: "Blocks whose body was read whole, by how they went to the keepstores: cut_through (streamed as they arrived) or store_and_forward (held whole first: POST /, a small block, or a slow client).",
		}, []string{"mode"}),
		spoolDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "audit_spool_depth",
			Help: "Audit records waiting for delivery to the API server.",
		}),
		auditDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "audit_delivered_total",
			Help: "Audit records accepted by the API server.",
		}),
		auditRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "audit_token_refused",
			Help: "1 while the API server refuses the audit token (401/403): records wait in the spool until a valid token is configured (SIGHUP re-reads --audit-token-file).",
		}),
		auditFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "arvupload", Subsystem: "proxy", Name: "audit_delivery_failures_total",
			Help: "Failed attempts to deliver an audit record (retried).",
		}),
	}
	m.reg.MustRegister(m.requests, m.bytesIn, m.replicasStored, m.upstreamErrors, m.tokenCache,
		m.inFlight, m.queued, m.refused, m.buffers, m.bufferBytes, m.windows, m.modes, m.spoolDepth, m.auditDelivered, m.auditFailed, m.auditRefused)
	return m
}
