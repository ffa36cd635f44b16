package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series. Each server has its own
// registry, so tests can run several servers in one process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// passwordChecks counts argon2id verifications by outcome ("right",
	// "wrong"; an unknown name is checked, against a decoy, and wrong),
	// and password sign-ins refused unchecked ("blocked").
	passwordChecks *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "filegate_http_requests_total", Help: "HTTP requests by door, method and status code.",
		}, []string{"door", "method", "code"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "filegate_http_request_bytes_total", Help: "Request body bytes read, by door.",
		}, []string{"door"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "filegate_http_response_bytes_total", Help: "Response body bytes written, by door.",
		}, []string{"door"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "filegate_http_request_duration_seconds", Help: "Request latency by door and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"door", "method"}),
		passwordChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "filegate_password_checks_total",
			Help: "Password checks (argon2id, 19 MiB each) by outcome: right, wrong, or blocked (refused unchecked after repeated failures).",
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.requests, m.bytesIn, m.bytesOut, m.latency, m.passwordChecks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// knownMethods bounds the method label: anything else counts as OTHER.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "PUT": true, "POST": true, "PATCH": true, "DELETE": true, "OPTIONS": true,
	"PROPFIND": true, "PROPPATCH": true, "MKCOL": true, "COPY": true, "MOVE": true, "LOCK": true, "UNLOCK": true,
}

func (m *metrics) observe(door, method string, status int, in, out int64, d time.Duration) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.requests.WithLabelValues(door, method, strconv.Itoa(status)).Inc()
	m.bytesIn.WithLabelValues(door).Add(float64(in))
	m.bytesOut.WithLabelValues(door).Add(float64(out))
	m.latency.WithLabelValues(door, method).Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
