package master

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one master's Prometheus metrics, on a registry of its own so
// that several masters can live in one process.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	assignLatency prometheus.Histogram
	repairSteps   *prometheus.CounterVec
}

func newMetrics(m *Master) *metrics {
	reg := prometheus.NewRegistry()
	mt := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_master_requests_total",
			Help: "API requests served, by api and result code.",
		}, []string{"api", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_master_request_seconds",
			Help:    "API request latency by api (HTTP and gRPC), forwarding to the leader included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		assignLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_master_assign_duration_seconds",
			Help:    "Time to answer an assign on the leader, volume growth included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		repairSteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_master_repair_steps_total",
			Help: "Steps of automatic re-replication run by the leader, by result (done, failed).",
		}, []string{"result"}),
	}
	raftGauge := func(name, help string, f func(*raft.Raft) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			node := m.node.Load()
			if node == nil {
				return 0
			}
			return f(node.Raft())
		})
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		mt.requests,
		mt.latency,
		mt.assignLatency,
		mt.repairSteps,
		raftGauge("cairn_master_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shut down.",
			func(r *raft.Raft) float64 { return float64(r.State()) }),
		raftGauge("cairn_master_raft_term", "Current Raft term.",
			func(r *raft.Raft) float64 { return float64(r.CurrentTerm()) }),
		raftGauge("cairn_master_raft_commit_index", "Raft commit index.",
			func(r *raft.Raft) float64 { return float64(r.CommitIndex()) }),
		raftGauge("cairn_master_raft_applied_index", "Raft applied index.",
			func(r *raft.Raft) float64 { return float64(r.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cairn_master_volumes", Help: "Volumes known to the masters.",
		}, func() float64 {
			n := 0
			m.fsm.view(func(s *state) { n = len(s.Volumes) })
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cairn_master_volumes_writable", Help: "Writable volumes (leader only; 0 on followers).",
		}, func() float64 {
			if _, _, ok := m.leaderEpoch(); !ok {
				return 0
			}
			view := m.live.snapshot(time.Now())
			n := 0
			m.fsm.view(func(s *state) {
				for _, v := range s.Volumes {
					if ok, _, _, _ := view.volumeHealth(v, m.cfg.VolumeSizeLimit); ok {
						n++
					}
				}
			})
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cairn_master_servers_alive", Help: "Volume servers heartbeating to this leader (0 on followers).",
		}, func() float64 {
			if _, _, ok := m.leaderEpoch(); !ok {
				return 0
			}
			view := m.live.snapshot(time.Now())
			n := 0
			for u := range view.servers {
				if view.alive(u) {
					n++
				}
			}
			return float64(n)
		}),
	)
	return mt
}

// request counts one API request and its latency since start.
func (mt *metrics) request(api, code string, start time.Time) {
	mt.requests.WithLabelValues(api, code).Inc()
	mt.latency.WithLabelValues(api).Observe(time.Since(start).Seconds())
}
