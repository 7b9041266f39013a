// Package master is cairn's master server: a Raft group that owns the
// topology (volume servers, volumes, replica sets, primaries) and the
// volume-id and file-key sequences, and serves assign and lookup.
//
// Replicated state lives in fsm (see command.go for the commands); liveness
// of volume servers is soft state kept by the leader from heartbeats.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/raftutil"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// ErrNoLeader is returned when no master leader is known.
var ErrNoLeader = errors.New("no master leader elected yet; retry in a few seconds")

// ErrNotRunning is returned by Ready before Run started Raft or after it stopped.
var ErrNotRunning = errors.New("master: not running")

// Defaults for zero Config fields.
const (
	DefaultReplication     = "000"
	DefaultVolumeSizeLimit = 1 << 30
	DefaultPulse           = time.Second
	// keyBlock is how many file keys the leader leases per Raft round trip.
	keyBlock = 10000
)

// Config configures one master.
type Config struct {
	Dir  string // Raft state
	IP   string // address to listen on and advertise
	Port int    // HTTP; gRPC on Port+10000, Raft on Port+20000
	// Peers are the HTTP addresses of all masters, this one included. Empty
	// means a single master.
	Peers              []string
	DefaultReplication string // "000" when empty
	// VolumeSizeLimit: a volume at or over it is not writable (1 GiB when 0).
	VolumeSizeLimit uint64
	// Pulse is the heartbeat interval of volume servers; one is dead after
	// three missed pulses (1s when 0).
	Pulse    time.Duration
	Security *security.Config
	// Tokens signs the data-path token of every assign (and of lookups
	// when reads need one). Nil: Security's tokens, if any.
	Tokens *security.Tokens
	Logger *slog.Logger
	// RepairAfter is how long a volume server may be silent before the
	// leader re-replicates the volumes it held (DefaultRepairAfter when 0;
	// negative turns automatic repair off).
	RepairAfter time.Duration
	// RaftTimeout, when set, is Raft's heartbeat and election timeout
	// (hashicorp/raft's default of 1s otherwise). Tests shorten it.
	RaftTimeout time.Duration
}

// Master is one master server. Create it with New and start it with Run.
type Master struct {
	cfg     Config
	addr    string // HTTP address, the Raft ID
	log     *slog.Logger
	fsm     *fsm
	live    *liveness
	pool    *rpc.Pool
	client  *http.Client
	metrics *metrics
	node    atomic.Pointer[raftutil.Node] // set while Run runs

	// lead tracks this master's current leadership epoch.
	lead struct {
		mu    sync.Mutex // guards term and since
		term  uint64     // term in which this master was last seen leading
		since time.Time  // when it was first seen leading in term
	}
	// keys is the leader's block of leased file keys.
	keys struct {
		mu        sync.Mutex // guards the fields below; held across the lease round trip
		term      uint64     // epoch the block was leased in
		next, end uint64
	}
	// grow serializes volume growth per collection and replication.
	grow struct {
		mu    sync.Mutex // guards locks and failed
		locks map[string]*sync.Mutex
		// failed is the last failed growth per collection and placement:
		// assigns within a pulse of it get its error without trying again,
		// and it is logged at most every growLogEvery.
		failed map[string]*growFailure
	}
}

type growFailure struct {
	err    error
	at     time.Time // of the failure
	logged time.Time // of the last warning
}

// growLogEvery is how often a failing volume growth is logged again.
const growLogEvery = 10 * time.Second

// New validates cfg and returns a master that is not yet listening.
func New(cfg Config) (*Master, error) {
	if cfg.Dir == "" || cfg.IP == "" || cfg.Port <= 0 {
		return nil, errors.New("master: Dir, IP and Port are required")
	}
	if cfg.DefaultReplication == "" {
		cfg.DefaultReplication = DefaultReplication
	}
	if _, err := parsePlacement(cfg.DefaultReplication); err != nil {
		return nil, fmt.Errorf("master: default replication: %w", err)
	}
	if cfg.VolumeSizeLimit == 0 {
		cfg.VolumeSizeLimit = DefaultVolumeSizeLimit
	}
	if cfg.Pulse <= 0 {
		cfg.Pulse = DefaultPulse
	}
	if cfg.RepairAfter == 0 {
		cfg.RepairAfter = DefaultRepairAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tokens == nil {
		cfg.Tokens = cfg.Security.DataTokens()
	}
	addr := net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port))
	if _, err := rpc.RaftAddr(addr); err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	for _, p := range cfg.Peers {
		if _, err := rpc.RaftAddr(p); err != nil {
			return nil, fmt.Errorf("master: peer: %w", err)
		}
	}
	m := &Master{
		cfg:    cfg,
		addr:   addr,
		log:    cfg.Logger.With("master", addr),
		fsm:    newFSM(),
		live:   newLiveness(3 * cfg.Pulse),
		pool:   rpc.NewPool(cfg.Security),
		client: httpx.Client(cfg.Security, 30*time.Second),
	}
	m.grow.locks = map[string]*sync.Mutex{}
	m.grow.failed = map[string]*growFailure{}
	m.metrics = newMetrics(m)
	return m, nil
}

// Addr returns the master's HTTP address.
func (m *Master) Addr() string { return m.addr }

// deadAfter is how long a silent volume server stays alive.
func (m *Master) deadAfter() time.Duration { return 3 * m.cfg.Pulse }

// Run listens on HTTP and gRPC, joins the Raft group and serves until ctx is
// cancelled, then shuts everything down. Listen errors are returned at once.
func (m *Master) Run(ctx context.Context) error {
	httpLn, grpcLn, err := rpc.Listen("master", m.addr)
	if err != nil {
		return err
	}
	node, err := m.startRaft()
	if err != nil {
		httpLn.Close()
		grpcLn.Close()
		return err
	}
	m.node.Store(node)
	m.log.Info("master started", "http", m.addr, "grpc", grpcLn.Addr().String(), "peers", m.cfg.Peers)

	gs := rpc.NewServer(m.cfg.Security)
	pb.RegisterMasterServer(gs, &grpcService{m: m})
	pb.RegisterRaftAdminServer(gs, &raftutil.AdminService{Group: "master", Node: m.node.Load, Pool: m.pool})
	hs := httpx.Server(m.handler(), m.cfg.Security)
	runErr := rpc.Serve(ctx, "master", hs, httpLn, gs, grpcLn, m.loop, m.repairLoop)
	m.node.Store(nil)
	if err := node.Shutdown(); err != nil && runErr == nil {
		runErr = fmt.Errorf("master: %w", err)
	}
	m.pool.Close()
	m.log.Info("master stopped")
	return runErr
}

// startRaft joins the masters' Raft group.
func (m *Master) startRaft() (*raftutil.Node, error) {
	rt := m.cfg.RaftTimeout
	node, err := raftutil.Start(raftutil.Config{
		Dir:                m.cfg.Dir,
		ID:                 m.addr,
		Peers:              m.cfg.Peers,
		Security:           m.cfg.Security,
		FSM:                m.fsm,
		Logger:             m.log,
		HeartbeatTimeout:   rt,
		ElectionTimeout:    rt,
		LeaderLeaseTimeout: rt / 2,
		OnLeaderChange:     func(bool, string) { m.leaderEpoch() },
	})
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	return node, nil
}

// Ready returns nil when this master knows a leader.
func (m *Master) Ready() error {
	node := m.node.Load()
	if node == nil {
		return ErrNotRunning
	}
	if node.LeaderHTTP() == "" {
		return ErrNoLeader
	}
	return nil
}

// leaderEpoch reports whether this master leads, since when, and in which
// term. Entering a new term as leader resets soft state: heartbeats seen
// before are stale.
func (m *Master) leaderEpoch() (term uint64, since time.Time, ok bool) {
	node := m.node.Load()
	if node == nil || !node.IsLeader() {
		return 0, time.Time{}, false
	}
	term = node.Term()
	m.lead.mu.Lock()
	defer m.lead.mu.Unlock()
	if term != m.lead.term {
		m.lead.term = term
		m.lead.since = time.Now()
		m.live.reset()
	}
	return term, m.lead.since, true
}

// inGrace reports whether a leader that started leading at since should
// still wait for heartbeats before judging servers dead.
func (m *Master) inGrace(since time.Time) bool {
	return time.Since(since) < m.deadAfter()
}

// growGrace reports whether a leader that started leading at since should
// still hold back growing volumes: within the grace, until every volume
// server the cluster has registered has reported to it (their volumes may
// be writable; growing meanwhile would make volumes nobody needs). Once all
// have reported, no heartbeat is awaited, and the first write to a new
// cluster does not wait out the grace (2.4 s with one-second pulses).
func (m *Master) growGrace(since time.Time) bool {
	if !m.inGrace(since) {
		return false
	}
	view := m.live.snapshot(time.Now())
	waiting := true
	m.fsm.view(func(s *state) {
		if len(s.Servers) == 0 {
			return
		}
		for url := range s.Servers {
			if _, ok := view.lastSeen(url); !ok {
				return
			}
		}
		waiting = false
	})
	return waiting
}

// loop runs leader housekeeping until ctx ends: it notices leadership, moves
// primaries away from dead servers and refreshes gauges.
func (m *Master) loop(ctx context.Context) {
	t := time.NewTicker(m.cfg.Pulse / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, since, ok := m.leaderEpoch(); ok && !m.inGrace(since) {
			m.failoverPrimaries(ctx, since)
		}
	}
}

// failoverPrimaries moves the primary of each volume whose primary server has
// been dead for longer than the dead timeout to its first alive replica.
func (m *Master) failoverPrimaries(ctx context.Context, since time.Time) {
	view := m.live.snapshot(time.Now())
	type move struct {
		id       uint32
		from, to string
	}
	var moves []move
	m.fsm.view(func(s *state) {
		for _, v := range s.Volumes {
			if view.alive(v.Primary) {
				continue
			}
			ref, ok := view.lastSeen(v.Primary)
			if !ok || ref.Before(since) {
				ref = since
			}
			if view.now.Sub(ref) <= 2*m.deadAfter() {
				continue
			}
			for _, r := range v.Replicas {
				if r != v.Primary && view.alive(r) {
					moves = append(moves, move{v.ID, v.Primary, r})
					break
				}
			}
		}
	})
	node := m.node.Load()
	for _, mv := range moves {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := node.Apply(actx, setPrimaryCmd(mv.id, mv.to))
		cancel()
		if err != nil {
			m.log.Warn("could not move primary of volume away from dead server; will retry", "volume", mv.id, "dead", mv.from, "new", mv.to, "err", err)
			continue
		}
		m.log.Warn("moved primary of volume away from dead server", "volume", mv.id, "dead", mv.from, "new", mv.to)
	}
}
