package volume

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairn-storage/cairn/internal/httpx"
)

// metrics are a volume server's Prometheus series, on a registry of its own
// so several servers can share a process.
type metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	latency          *prometheus.HistogramVec
	replicatedWrites prometheus.Counter
	corruptReads     prometheus.Counter
	repairs          prometheus.Counter
	catchUpRecords   prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_volume_http_requests_total", Help: "Data path requests by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_volume_http_request_seconds", Help: "Data path latency by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"method"}),
		replicatedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_volume_replicated_writes_total", Help: "Needle records sent to other replicas and stored there.",
		}),
		corruptReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_volume_corrupt_reads_total", Help: "Reads that found a checksum mismatch in a local needle.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_volume_repairs_total", Help: "Corrupt needles replaced by a good copy from a replica.",
		}),
		catchUpRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_volume_catchup_records_total", Help: "Records pulled or pushed by catch-up passes.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.replicatedWrites, m.corruptReads, m.repairs, m.catchUpRecords)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_volume_volumes", Help: "Volumes on this server.",
	}, func() float64 { return float64(len(s.store.Volumes())) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_volume_out_of_sync_volumes", Help: "Volumes waiting for a catch-up pass (read-only meanwhile).",
	}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(len(s.mu.needSync)) }))
	reg.MustRegister(newStoreCollector(s.store))
	return m
}

// instrument counts and times every HTTP request.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return httpx.Instrument(h, func(r *http.Request, code int, d time.Duration) {
		m.requests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
		m.latency.WithLabelValues(r.Method).Observe(d.Seconds())
	})
}

// storeCollector reports per-volume size, needle counts and garbage.
type storeCollector struct {
	st                            *Store
	size, needles, deleted, ratio *prometheus.Desc
	syncs, synced                 *prometheus.Desc
}

func newStoreCollector(st *Store) *storeCollector {
	l := []string{"volume", "collection"}
	return &storeCollector{
		st:      st,
		size:    prometheus.NewDesc("cairn_volume_bytes", "Bytes in the volume's data file.", l, nil),
		needles: prometheus.NewDesc("cairn_volume_needles", "Live needles in the volume.", l, nil),
		deleted: prometheus.NewDesc("cairn_volume_deleted_needles", "Deleted or overwritten needles not yet vacuumed.", l, nil),
		ratio:   prometheus.NewDesc("cairn_volume_garbage_ratio", "Share of the data file that vacuum would reclaim.", l, nil),
		syncs:   prometheus.NewDesc("cairn_volume_fsyncs_total", "fdatasync calls on the volume's data file (one per group-commit batch).", l, nil),
		synced:  prometheus.NewDesc("cairn_volume_synced_records_total", "Records made durable; divided by fsyncs it is the mean group-commit batch size.", l, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.needles
	ch <- c.deleted
	ch <- c.ratio
	ch <- c.syncs
	ch <- c.synced
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.st.Volumes() {
		in := v.Info()
		lv := []string{strconv.FormatUint(uint64(in.ID), 10), in.Collection}
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(in.Size), lv...)
		ch <- prometheus.MustNewConstMetric(c.needles, prometheus.GaugeValue, float64(in.NeedleCount), lv...)
		ch <- prometheus.MustNewConstMetric(c.deleted, prometheus.GaugeValue, float64(in.DeletedCount), lv...)
		ratio := 0.0
		if in.Size > 0 {
			ratio = float64(in.DeletedBytes) / float64(in.Size)
		}
		ch <- prometheus.MustNewConstMetric(c.ratio, prometheus.GaugeValue, ratio, lv...)
		syncs, records := v.Stats()
		ch <- prometheus.MustNewConstMetric(c.syncs, prometheus.CounterValue, float64(syncs), lv...)
		ch <- prometheus.MustNewConstMetric(c.synced, prometheus.CounterValue, float64(records), lv...)
	}
}
