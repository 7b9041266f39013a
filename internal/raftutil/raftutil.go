// Package raftutil starts a hashicorp/raft member the way every cairn Raft
// group runs: log and stable store in hashicorp/raft-wal (raft-boltdb in data
// directories created before it), file snapshots, a TCP (or mutual TLS)
// transport on the member's HTTP port + 20000, members named by their HTTP
// address, and raft's logging routed to slog.
package raftutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// ErrNotLeader is returned by calls that only the leader can serve.
var ErrNotLeader = errors.New("raftutil: this member is not the leader")

// ErrConfig is wrapped by errors about an invalid Config.
var ErrConfig = errors.New("raftutil: bad configuration")

// Config describes one member of a Raft group.
type Config struct {
	// Dir holds the log and stable store (wal/, or raft.db in a directory
	// created before the WAL) and snapshots/.
	Dir string
	// ID is this member's HTTP address "ip:port"; Raft listens on
	// rpc.RaftAddr(ID).
	ID string
	// Peers are the HTTP addresses of all members, this one included. Empty
	// or only ID means a single-member group that bootstraps itself.
	Peers []string
	// Security enables mutual TLS on the Raft transport; nil is plaintext.
	Security *security.Config
	// FSM is the replicated state machine.
	FSM raft.FSM
	// Logger receives raft warnings and errors and leadership changes.
	Logger *slog.Logger
	// OnLeaderChange, if set, is called (from one goroutine, in order) each
	// time this member learns of a new leader; leader is the leader's ID or
	// "" when none is known. It must not block.
	OnLeaderChange func(isLeader bool, leader string)

	// Timing overrides; zero keeps hashicorp/raft's defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
}

// Node is a running Raft member. All methods are safe for concurrent use.
type Node struct {
	id     string
	raft   *raft.Raft
	store  logStore
	kind   string // LogStoreWAL or LogStoreBolt
	trans  *raft.NetworkTransport
	log    *slog.Logger
	obs    *raft.Observer
	stopc  chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

// Start opens (or creates) the member's state in cfg.Dir, binds the Raft port
// and joins the group. A member without existing state bootstraps the group
// with the full Peers configuration; every member does the same so that any
// of them can be started first.
func Start(cfg Config) (*Node, error) {
	if cfg.ID == "" || cfg.Dir == "" || cfg.FSM == nil {
		return nil, fmt.Errorf("%w: ID, Dir and FSM are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	peers := slices.Clone(cfg.Peers)
	if !slices.Contains(peers, cfg.ID) {
		if len(peers) > 0 {
			return nil, fmt.Errorf("%w: peers %v do not include this member %s", ErrConfig, peers, cfg.ID)
		}
		peers = []string{cfg.ID}
	}
	bootstrap := raft.Configuration{}
	for _, p := range peers {
		addr, err := rpc.RaftAddr(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		bootstrap.Servers = append(bootstrap.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(p), Address: raft.ServerAddress(addr),
		})
	}
	raftAddr, err := rpc.RaftAddr(cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}

	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftutil: create %s: %w", cfg.Dir, err)
	}
	hcl := newHCLogger(cfg.Logger, cfg.ID)
	store, kind, err := openLogStore(cfg.Dir, hcl)
	if err != nil {
		return nil, err
	}
	if kind == LogStoreBolt {
		cfg.Logger.Info("raft log is "+boltFile+" (this data directory predates the WAL); it keeps working, at two fsyncs per append instead of one",
			"id", cfg.ID, "dir", cfg.Dir)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, hcl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftutil: open snapshot store in %s: %w", cfg.Dir, err)
	}
	stream, err := listen(raftAddr, cfg.Security)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftutil: listen for raft on %s: %w", raftAddr, err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hcl,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hcl
	// A removed member keeps running (outside the group, never campaigning)
	// so that it can be added back without a restart.
	rc.ShutdownOnRemove = false
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		rc.LeaderLeaseTimeout = rc.HeartbeatTimeout
	}
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}

	fail := func(err error) (*Node, error) {
		trans.Close()
		store.Close()
		return nil, err
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("raftutil: read raft state in %s: %w", cfg.Dir, err))
	}
	r, err := raft.NewRaft(rc, cfg.FSM, store, store, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("raftutil: start raft: %w", err))
	}
	n := &Node{
		id:    cfg.ID,
		raft:  r,
		store: store,
		kind:  kind,
		trans: trans,
		log:   cfg.Logger,
		stopc: make(chan struct{}),
	}
	if !existing {
		if err := r.BootstrapCluster(bootstrap).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Shutdown()
			return nil, fmt.Errorf("raftutil: bootstrap group %v: %w", peers, err)
		}
	}
	n.watchLeader(cfg.OnLeaderChange)
	return n, nil
}

// watchLeader logs every leadership change once and forwards it to fn.
func (n *Node) watchLeader(fn func(bool, string)) {
	ch := make(chan raft.Observation, 64)
	n.obs = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(n.obs)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		last := "\x00"
		for {
			select {
			case <-n.stopc:
				return
			case o := <-ch:
				lo := o.Data.(raft.LeaderObservation)
				leader := string(lo.LeaderID)
				if leader == last {
					continue
				}
				last = leader
				switch {
				case leader == n.id:
					n.log.Info("became leader", "id", n.id, "term", n.raft.CurrentTerm())
				case leader == "":
					n.log.Info("no leader known; an election is under way", "id", n.id)
				default:
					n.log.Info("leader is "+leader, "id", n.id, "leader", leader)
				}
				if fn != nil {
					fn(leader == n.id, leader)
				}
			}
		}
	}()
}

// Raft returns the underlying raft instance for calls this package does not wrap.
func (n *Node) Raft() *raft.Raft { return n.raft }

// LogStore returns the kind of the member's log store: LogStoreWAL or
// LogStoreBolt.
func (n *Node) LogStore() string { return n.kind }

// ID returns this member's ID (its HTTP address).
func (n *Node) ID() string { return n.id }

// LeaderHTTP returns the leader's HTTP address, or "" if no leader is known.
func (n *Node) LeaderHTTP() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this member currently believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Term returns the current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// timeout derives a raft timeout from ctx; 10s without a deadline.
func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return 10 * time.Second
}

// mapErr turns raft's leadership errors into ErrNotLeader.
func mapErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return err
}

// Apply replicates cmd and returns the FSM's response once it is applied on
// this member. A response that is an error is returned as the error. An error
// wrapping ErrNotLeader means the command was not accepted here or leadership
// was lost meanwhile (it may still commit later).
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	f := n.raft.Apply(cmd, timeout(ctx))
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("raftutil: apply: %w", ctx.Err())
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("raftutil: apply: %w", mapErr(err))
		}
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// Barrier waits until every preceding log entry is applied on this member
// (which must be the leader).
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.raft.Barrier(timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftutil: barrier: %w", mapErr(err))
	}
	return nil
}

// VerifyLeader checks with a quorum that this member is still the leader.
func (n *Node) VerifyLeader() error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return mapErr(err)
	}
	return nil
}

// Snapshot takes a snapshot now.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftutil: snapshot: %w", err)
	}
	return nil
}

// Stats returns raft's diagnostic counters.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Peer is one member of the group's configuration.
type Peer struct {
	ID       string `json:"id"`       // HTTP address
	Address  string `json:"address"`  // Raft address
	Suffrage string `json:"suffrage"` // Voter, Nonvoter, Staging
}

// Peers returns the latest group configuration.
func (n *Node) Peers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftutil: read configuration: %w", err)
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String()})
	}
	return out, nil
}

// AddVoter adds the member with HTTP address id (Raft on id's port + 20000).
func (n *Node) AddVoter(ctx context.Context, id string) error {
	addr, err := rpc.RaftAddr(id)
	if err != nil {
		return err
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftutil: add voter %s: %w", id, mapErr(err))
	}
	return nil
}

// RemoveServer removes the member with HTTP address id from the group.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftutil: remove server %s: %w", id, mapErr(err))
	}
	return nil
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is "".
func (n *Node) TransferLeadership(id string) error {
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		peers, err := n.Peers()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(peers, func(p Peer) bool { return p.ID == id })
		if i < 0 || peers[i].Suffrage != raft.Voter.String() {
			return fmt.Errorf("raftutil: transfer leadership to %q: %w: not a voter of the group", id, ErrConfig)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(peers[i].Address))
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftutil: transfer leadership to %q: %w", id, mapErr(err))
	}
	return nil
}

// Shutdown stops raft, closes the transport and the log store. It is safe to
// call more than once; later calls return the first result.
func (n *Node) Shutdown() error {
	n.closed.Do(func() {
		err := n.raft.Shutdown().Error()
		if n.obs != nil {
			n.raft.DeregisterObserver(n.obs)
		}
		close(n.stopc)
		n.wg.Wait()
		if cerr := n.trans.Close(); err == nil {
			err = cerr
		}
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			n.err = fmt.Errorf("raftutil: shutdown: %w", err)
		}
	})
	return n.err
}
