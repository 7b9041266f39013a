package filer

import (
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
)

// metrics are a filer's Prometheus series, on a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	ops         *prometheus.CounterVec
	opLatency   *prometheus.HistogramVec
	requests    *prometheus.CounterVec
	reqLatency  *prometheus.HistogramVec
	reads       *prometheus.CounterVec
	readLatency *prometheus.HistogramVec
	gcDeleted   prometheus.Counter
	compactions prometheus.Counter
	// piecesRepaired counts files the compactor found with damaged pieces
	// and repaired.
	piecesRepaired prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_filer_operations_total", Help: "Namespace mutations applied through Raft, by operation and errno (0 = success).",
		}, []string{"op", "errno"}),
		opLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_filer_operation_seconds", Help: "Mutation latency until committed and applied, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_filer_http_requests_total", Help: "HTTP API requests by method and status code.",
		}, []string{"method", "code"}),
		gcDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_filer_gc_deleted_needles_total", Help: "Unreferenced needles deleted from volume servers and dequeued.",
		}),
	}
	m.compactions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_filer_compactions_total", Help: "Fragmented files whose slices were rewritten into fresh needles.",
	})
	m.reqLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cairn_filer_http_request_seconds", Help: "HTTP API latency by method.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 18),
	}, []string{"method"})
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cairn_filer_reads_total", Help: "Namespace reads served over gRPC (mounts, CSI, shell), by operation and result (ok, an errno, or error).",
	}, []string{"op", "result"})
	m.readLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cairn_filer_read_seconds", Help: "Namespace read latency by operation, leader check included.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
	}, []string{"op"})
	m.piecesRepaired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_filer_pieces_repaired_total",
		Help: "Files whose pieces overlapped or passed their size (stored by an earlier version) that the compactor repaired.",
	})
	reg.MustRegister(m.ops, m.opLatency, m.requests, m.reqLatency, m.reads, m.readLatency, m.gcDeleted, m.compactions, m.piecesRepaired)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_raft_state", Help: "Raft state: 0 follower, 1 candidate, 2 leader, 3 shut down.",
	}, func() float64 {
		if s.node == nil {
			return 0
		}
		return float64(s.node.Raft().State())
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_uploads_in_flight", Help: "File ids leased to writers and not yet referenced.",
	}, func() float64 {
		u, _ := s.fsm.State().Uploads()
		return float64(len(u))
	}))
	raftGauge := func(name, help, key string) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if s.node == nil {
				return 0
			}
			v, _ := strconv.ParseFloat(s.node.Stats()[key], 64)
			return v
		}))
	}
	raftGauge("cairn_filer_raft_term", "Current Raft term of this filer.", "term")
	raftGauge("cairn_filer_raft_commit_index", "Raft commit index of this filer.", "commit_index")
	raftGauge("cairn_filer_raft_applied_index", "Raft applied index of this filer.", "applied_index")
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_apply_running_seconds", Help: "How long the Raft log entry being applied to the state has been running (0 while none is); more than a few seconds means the state machine is stuck.",
	}, func() float64 {
		_, d := s.fsm.Applying()
		return d.Seconds()
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_raft_leader", Help: "1 when this filer is the Raft leader.",
	}, func() float64 {
		if s.node != nil && s.node.IsLeader() {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_inline_bytes", Help: "Bytes of small writes held by the filer itself (inline data), not yet moved to needles by the compactor.",
	}, func() float64 {
		_, b, _ := s.fsm.State().InlineUsage()
		return float64(b)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_filer_gc_pending_needles", Help: "Needles queued for deletion (first 10000 counted).",
	}, func() float64 {
		f, _ := s.fsm.State().PendingDeletes(10000)
		return float64(len(f))
	}))
	return m
}

func (m *metrics) observeOp(op string, r *Result, err error, d time.Duration) {
	errno := "0"
	switch {
	case err != nil:
		errno = "unavailable"
	case r != nil && r.Errno != 0:
		errno = syscall.Errno(r.Errno).Error()
	}
	m.ops.WithLabelValues(op, errno).Inc()
	m.opLatency.WithLabelValues(op).Observe(d.Seconds())
}

// readOps are the read operations counted by name; others (bad requests)
// count as "unknown", so clients cannot grow the label set.
var readOps = map[string]bool{
	"getattr": true, "attr": true, "lookup": true, "lookup_attr": true, "readdir": true, "readlink": true, "getxattr": true, "listxattr": true,
	"statfs": true, "resolve": true, "snapshots": true, "pending_deletes": true, "orphans": true,
	"referenced": true, "uploads": true, "leases": true,
}

// observeRead counts one gRPC read of op and its latency since start.
func (m *metrics) observeRead(op string, resp *pb.FilerReadResponse, err error, start time.Time) {
	if !readOps[op] {
		op = "unknown"
	}
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case resp != nil && resp.Errno != 0:
		result = syscall.Errno(resp.Errno).Error()
	}
	m.reads.WithLabelValues(op, result).Inc()
	m.readLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// instrument counts and times every HTTP request.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return httpx.Instrument(h, func(r *http.Request, code int, d time.Duration) {
		m.requests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
		m.reqLatency.WithLabelValues(r.Method).Observe(d.Seconds())
	})
}

// RegisterMetrics adds collectors of another part of the process (the
// mount of cairn server) to the series this filer serves on /metrics.
func (s *Server) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.met.reg.Register(c); err != nil {
			return fmt.Errorf("filer: register metrics: %w", err)
		}
	}
	return nil
}
