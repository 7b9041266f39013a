package csi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/cairn-storage/cairn/internal/httpx"
)

// metrics are the plugin's Prometheus series, on a registry of its own.
type metrics struct {
	reg     *prometheus.Registry
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_csi_calls_total", Help: "CSI calls served, by method and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_csi_call_duration_seconds", Help: "CSI call latency by method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"method"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m.calls, m.latency)
	return m
}

// observe counts one call; a nil m (a Driver not made by New) counts nothing.
func (m *metrics) observe(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(method, code.String()).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// MetricsHandler serves the plugin's metrics in the Prometheus format.
func (d *Driver) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.met.reg, promhttp.HandlerOpts{})
}

// serveMetrics serves /metrics and /healthz on addr until ctx ends. The
// listener is opened before it returns, so a bad address fails the start.
func (d *Driver) serveMetrics(ctx context.Context, addr string) (<-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("csi: --metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.MetricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	d.log.Info("CSI metrics served", "addr", ln.Addr().String(), "path", "/metrics")
	errc := make(chan error, 1)
	go func() { errc <- httpx.Serve(ctx, httpx.Server(mux, nil), ln) }()
	return errc, nil
}
