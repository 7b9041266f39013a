package filer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/raftutil"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// Config configures a filer.
type Config struct {
	Dir     string
	IP      string
	Port    int      // HTTP; gRPC on Port+10000, Raft on Port+20000
	Peers   []string // HTTP addresses of all filers
	Masters []string // master HTTP addresses
	// Replication and Collection are used for needles written through the
	// filer's HTTP API ("" = the master's default).
	Replication, Collection string
	// ChunkSize cuts uploads through the HTTP API into needles (default 4 MiB).
	ChunkSize int
	// CompactInterval is how often the leader looks for fragmented files
	// to compact (default 10s).
	CompactInterval time.Duration
	// CompactIdle is how long a file must go unchanged before it is
	// compacted (default 3 × CompactInterval): a file still being written
	// would have its compaction undone by the next write, after the
	// compactor had read and rewritten all of it.
	CompactIdle time.Duration
	// UploadTimeout is how long a needle may stay uploaded but unreferenced
	// before the GC deletes it (default 1h).
	UploadTimeout time.Duration
	// ApplyStuckAfter is how long applying one Raft log entry may run
	// before the filer reports its state machine stuck: an error in the
	// log, /readyz failing, and cairn_filer_apply_running_seconds
	// (default 1m; an entry normally applies in well under a second).
	ApplyStuckAfter time.Duration
	Security        *security.Config
	// HTTPAPI is the mode of the namespace HTTP API: HTTPAPIReadWrite
	// (default), HTTPAPIReadOnly or HTTPAPIOff.
	HTTPAPI string
	// HTTPBind is the address the namespace HTTP API listens on (default:
	// the filer address, shared with health and metrics).
	HTTPBind string
	// HTTPRoot confines the namespace HTTP API to this subtree, which
	// clients see as "/" (default "/").
	HTTPRoot string
	// Tokens signs the data-path tokens of the filer's own deletes (GC,
	// dropped uploads, compaction) and reads. Nil: Security's tokens.
	Tokens *security.Tokens
	Logger *slog.Logger
}

// Server is one member of the filer Raft group.
type Server struct {
	cfg   Config
	url   string
	fsm   *FSM
	node  *raftutil.Node
	pool  *rpc.Pool
	httpc *http.Client
	log   *slog.Logger
	met   *metrics
	hub   *eventHub
	data  *DataClient // reads and writes needles for the HTTP API and GC
	ring  masterRing

	// ready is closed once this member, as leader, has applied everything
	// committed before its term (a barrier), so leader reads are current.
	mu struct {
		sync.Mutex
		readyTerm uint64
	}
}

// NewServer opens the filer's Raft node and state.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CompactInterval <= 0 {
		cfg.CompactInterval = 10 * time.Second
	}
	if cfg.CompactIdle <= 0 {
		cfg.CompactIdle = 3 * cfg.CompactInterval
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = time.Hour
	}
	if cfg.ApplyStuckAfter <= 0 {
		cfg.ApplyStuckAfter = time.Minute
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 4 << 20
	}
	if cfg.Tokens == nil {
		cfg.Tokens = cfg.Security.DataTokens()
	}
	if err := cfg.checkHTTPAPI(); err != nil {
		return nil, err
	}
	if len(cfg.Masters) == 0 {
		return nil, errors.New("filer: no master address given; pass --master host:9333")
	}
	url := net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port))
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("filer: create data directory %s: %w", cfg.Dir, err)
	}
	s := &Server{
		cfg:   cfg,
		url:   url,
		pool:  rpc.NewPool(cfg.Security),
		httpc: httpx.Client(cfg.Security, 5*time.Minute),
		log:   cfg.Logger.With("component", "filer", "filer", url),
		hub:   newEventHub(),
	}
	fsm, err := NewFSM(filepath.Join(cfg.Dir, "state.db"))
	if err != nil {
		return nil, err
	}
	fsm.onApply = s.hub.publish
	s.fsm = fsm
	s.data = &DataClient{Assign: s.assign, Lookup: s.lookupVolume, Reserve: s.reserve, Batch: 8, HTTP: s.httpc, Scheme: httpx.Scheme(cfg.Security), Tokens: cfg.Tokens}
	s.data.Inline = func(_ context.Context, id string, off, n int64) ([]byte, error) {
		if off < 0 || n < 0 {
			return nil, fmt.Errorf("%w: inline read of %d bytes at %d", ErrData, n, off)
		}
		return s.fsm.State().ReadInline(id, uint64(off), uint64(n))
	}
	s.met = newMetrics(s)
	node, err := raftutil.Start(raftutil.Config{
		Dir: filepath.Join(cfg.Dir, "raft"), ID: url, Peers: cfg.Peers,
		Security: cfg.Security, FSM: fsm, Logger: s.log,
	})
	if err != nil {
		fsm.Close()
		return nil, fmt.Errorf("filer: start raft: %w", err)
	}
	s.node = node
	return s, nil
}

// URL is the filer's HTTP address.
func (s *Server) URL() string { return s.url }

// State gives direct (possibly stale) read access, for tests.
func (s *Server) State() *State { return s.fsm.State() }

// Run serves until ctx is cancelled, then stops Raft and closes the state.
// A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	defer s.fsm.Close()
	defer s.node.Shutdown()
	hl, gl, err := rpc.Listen("filer", s.url)
	if err != nil {
		return err
	}
	gs := rpc.NewServer(s.cfg.Security)
	pb.RegisterFilerServer(gs, &grpcService{s: s})
	pb.RegisterRaftAdminServer(gs, &raftutil.AdminService{Group: "filer", Node: func() *raftutil.Node { return s.node }, Pool: s.pool})
	hs, apiLoops, err := s.httpServers()
	if err != nil {
		hl.Close()
		gl.Close()
		return err
	}
	s.log.Info("filer started", "http", s.url, "grpc", gl.Addr().String(), "dir", s.cfg.Dir, "peers", s.cfg.Peers, "masters", s.cfg.Masters)
	// Ending the event streams first lets gRPC stop gracefully.
	closeHub := func(ctx context.Context) { <-ctx.Done(); s.hub.close() }
	runErr := rpc.Serve(ctx, "filer", hs, hl, gs, gl, append(apiLoops, s.gcLoop, s.compactLoop, s.applyWatchLoop, closeHub)...)
	s.pool.Close()
	s.log.Info("filer stopped")
	return runErr
}

// Ready returns nil when this member knows a leader and its state
// machine is not stuck (see applyStuck).
func (s *Server) Ready() error {
	if s.node.LeaderHTTP() == "" {
		return errors.New("filer: no leader elected yet")
	}
	if index, running, stuck := s.applyStuck(); stuck {
		return fmt.Errorf("filer: applying Raft log entry %d has not finished after %s, so no change can be applied (see the filer's log)", index, running.Round(time.Second))
	}
	return nil
}

// applyStuck reports the log entry being applied, how long it has run,
// and whether that is longer than cfg.ApplyStuckAfter.
func (s *Server) applyStuck() (index uint64, running time.Duration, stuck bool) {
	index, running = s.fsm.Applying()
	return index, running, running >= s.cfg.ApplyStuckAfter
}

// applyWatchLoop logs an error while the state machine is stuck on one
// log entry (once when found, then every ten times ApplyStuckAfter): a
// filer in that state keeps its Raft role and looks alive, but every
// change waits, and a restart replays the same entry.
func (s *Server) applyWatchLoop(ctx context.Context) {
	tick := time.NewTicker(min(5*time.Second, max(s.cfg.ApplyStuckAfter/4, 10*time.Millisecond)))
	defer tick.Stop()
	var told uint64
	var toldAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		index, running, stuck := s.applyStuck()
		if !stuck || index == told && time.Since(toldAt) < 10*s.cfg.ApplyStuckAfter {
			continue
		}
		told, toldAt = index, time.Now()
		s.log.Error("applying a Raft log entry has not finished; until it does, this filer applies no further change (writes and namespace changes wait and fail at their deadlines). If it never finishes it is a bug, and a restart replays the same entry: save a goroutine dump (run the filer with --debug-addr and fetch /debug/pprof/goroutine?debug=2) and report it with the log",
			"index", index, "running", running.Round(time.Second).String())
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Ready(); err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "leader": s.node.LeaderHTTP()})
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}))
	// Namespace paths bypass ServeMux, which would clean "/a/../b" into
	// "/b" (and redirect clients there); the filer rejects such paths.
	return s.met.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			mux.ServeHTTP(w, r)
		default:
			s.handleMainFS(w, r)
		}
	}))
}

// ensureLeaderCurrent makes a leader's state reflect every entry committed
// before its term, once per term, so that reads served by it are current.
func (s *Server) ensureLeaderCurrent(ctx context.Context) error {
	term := s.node.Term()
	s.mu.Lock()
	done := s.mu.readyTerm == term
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.node.Barrier(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.mu.readyTerm = term
	s.mu.Unlock()
	return nil
}
