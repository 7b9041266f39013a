package volume

import (
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
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
	catchUpPending   prometheus.Gauge
	replicateLatency prometheus.Histogram
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
	m.catchUpPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cairn_volume_catchup_pending_records", Help: "Records the running catch-up pass still has to pull or push (0 when none runs).",
	})
	m.replicateLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "cairn_volume_replicate_seconds", Help: "Time for a replica to store a record sent by the primary (the replication lag of an acknowledged write).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	})
	reg.MustRegister(m.requests, m.latency, m.replicatedWrites, m.corruptReads, m.repairs, m.catchUpRecords, m.catchUpPending, m.replicateLatency)
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
	commitLatency, commitSize     *prometheus.Desc
}

func newStoreCollector(st *Store) *storeCollector {
	l := []string{"volume", "collection"}
	return &storeCollector{
		st:      st,
		size:    prometheus.NewDesc("cairn_volume_bytes", "Bytes in the volume's data file.", l, nil),
		needles: prometheus.NewDesc("cairn_volume_needles", "Live needles in the volume.", l, nil),
		deleted: prometheus.NewDesc("cairn_volume_deleted_needles", "Deleted or overwritten needles not yet vacuumed.", l, nil),
		ratio:   prometheus.NewDesc("cairn_volume_garbage_ratio", "Share of the data file that vacuum would reclaim.", l, nil),
		syncs:   prometheus.NewDesc("cairn_volume_fsyncs_total", "Successful fdatasyncs of the volume's data file (one per group commit, covering every batch written before it).", l, nil),
		synced:  prometheus.NewDesc("cairn_volume_synced_records_total", "Records made durable; divided by fsyncs it is the mean group-commit batch size.", l, nil),
		commitLatency: prometheus.NewDesc("cairn_volume_fsync_seconds",
			"Time from the start of the first write a group commit covers to the return of its fdatasync, all volumes of this server.", nil, nil),
		commitSize: prometheus.NewDesc("cairn_volume_group_commit_records",
			"Records per group commit (one fdatasync), all volumes of this server.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.needles
	ch <- c.deleted
	ch <- c.ratio
	ch <- c.syncs
	ch <- c.synced
	ch <- c.commitLatency
	ch <- c.commitSize
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	var lat, size histSnapshot
	for _, v := range c.st.Volumes() {
		lat.add(v.commits.latency[:], syncBounds[:], float64(v.commits.latencyNs.Load())/1e9)
		size.add(v.commits.size[:], batchBounds[:], float64(v.commits.sizeTotal.Load()))
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
	ch <- prometheus.MustNewConstHistogram(c.commitLatency, lat.count, lat.sum, lat.buckets)
	ch <- prometheus.MustNewConstHistogram(c.commitSize, size.count, size.sum, size.buckets)
}

// Group-commit statistics. Each volume keeps lock-free histograms of the
// time to write and fdatasync the batches of one group commit and of their
// records; the collector sums them over the server's volumes.
var (
	syncBounds  = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	batchBounds = [...]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
)

// commitStats are one volume's group-commit histograms: observations per
// bucket (not cumulative; the last slot is +Inf) and their sums. The zero
// value is ready; safe for concurrent use.
type commitStats struct {
	latency   [len(syncBounds) + 1]atomic.Uint64
	latencyNs atomic.Uint64
	size      [len(batchBounds) + 1]atomic.Uint64
	sizeTotal atomic.Uint64
}

// record notes one group commit of n records that took d to write and sync.
func (c *commitStats) record(d time.Duration, n int) {
	c.latency[sort.SearchFloat64s(syncBounds[:], d.Seconds())].Add(1)
	c.latencyNs.Add(uint64(d.Nanoseconds()))
	c.size[sort.SearchFloat64s(batchBounds[:], float64(n))].Add(1)
	c.sizeTotal.Add(uint64(n))
}

// histSnapshot accumulates histograms in Prometheus' cumulative form.
type histSnapshot struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64
}

// add adds one volume's slots (len(bounds)+1 of them) and sum.
func (s *histSnapshot) add(slots []atomic.Uint64, bounds []float64, sum float64) {
	if s.buckets == nil {
		s.buckets = make(map[float64]uint64, len(bounds))
	}
	var cum uint64
	for i, b := range bounds {
		cum += slots[i].Load()
		s.buckets[b] += cum
	}
	s.count += cum + slots[len(bounds)].Load()
	s.sum += sum
}
