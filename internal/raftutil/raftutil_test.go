package raftutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// kvFSM is a tiny replicated map: commands are "key=value" JSON pairs.
type kvFSM struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

func newKV() *kvFSM { return &kvFSM{m: map[string]string{}} }

func (f *kvFSM) Apply(l *raft.Log) any {
	var kv [2]string
	if err := json.Unmarshal(l.Data, &kv); err != nil {
		return fmt.Errorf("kv: bad command: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[kv[0]] = kv[1]
	return len(f.m)
}

func (f *kvFSM) get(k string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[k]
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.m)
	return kvSnap(b), err
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	m := map[string]string{}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return err
	}
	f.mu.Lock()
	f.m = m
	f.mu.Unlock()
	return nil
}

type kvSnap []byte

func (s kvSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (kvSnap) Release() {}

func cmd(k, v string) []byte { b, _ := json.Marshal([2]string{k, v}); return b }

type member struct {
	cfg  Config
	fsm  *kvFSM
	node *Node
}

const testPort = 7450

func testConfig(t testing.TB, id string, peers []string) Config {
	return Config{
		Dir:                t.TempDir(),
		ID:                 id,
		Peers:              peers,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
	}
}

func startMember(t testing.TB, m *member) {
	t.Helper()
	m.fsm = newKV()
	m.cfg.FSM = m.fsm
	n, err := Start(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.node = n
	t.Cleanup(func() { n.Shutdown() })
}

func startGroup(t *testing.T, size int) []*member {
	var ids []string
	for range size {
		ip := testutil.LoopbackIP(t, testPort, testPort+20000)
		ids = append(ids, net.JoinHostPort(ip, strconv.Itoa(testPort)))
	}
	var ms []*member
	for _, id := range ids {
		m := &member{cfg: testConfig(t, id, ids)}
		startMember(t, m)
		ms = append(ms, m)
	}
	return ms
}

// waitLeader waits until every running member agrees on one leader among them.
func waitLeader(t testing.TB, ms []*member) *member {
	t.Helper()
	var leader *member
	testutil.WaitFor(t, 20*time.Second, "a leader all members agree on", func() error {
		leader = nil
		for _, m := range ms {
			if m.node.IsLeader() {
				leader = m
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, m := range ms {
			if got := m.node.LeaderHTTP(); got != leader.cfg.ID {
				return fmt.Errorf("%s sees leader %q, want %s", m.cfg.ID, got, leader.cfg.ID)
			}
		}
		return nil
	})
	return leader
}

func waitValue(t *testing.T, m *member, k, want string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, m.cfg.ID+" applying "+k, func() error {
		if got := m.fsm.get(k); got != want {
			return fmt.Errorf("%s=%q, want %q", k, got, want)
		}
		return nil
	})
}

func TestSingleNodeBootstrap(t *testing.T) {
	ip := testutil.LoopbackIP(t, testPort, testPort+20000)
	m := &member{cfg: testConfig(t, net.JoinHostPort(ip, strconv.Itoa(testPort)), nil)}
	startMember(t, m)
	waitLeader(t, []*member{m})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.node.Apply(ctx, cmd("a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if resp != 1 {
		t.Fatalf("response %v, want 1", resp)
	}
	if _, err := m.node.Apply(ctx, []byte("garbage")); err == nil {
		t.Fatal("FSM error was not returned by Apply")
	}
	peers, err := m.node.Peers()
	if err != nil || len(peers) != 1 || peers[0].ID != m.cfg.ID || peers[0].Suffrage != "Voter" {
		t.Fatalf("peers %+v, %v", peers, err)
	}

	// Restart from disk, after a snapshot, with more log on top.
	if err := m.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.node.Apply(ctx, cmd("b", "2")); err != nil {
		t.Fatal(err)
	}
	if err := m.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	startMember(t, m)
	waitLeader(t, []*member{m})
	waitValue(t, m, "a", "1")
	waitValue(t, m, "b", "2")
}

func TestThreeNodes(t *testing.T) {
	ms := startGroup(t, 3)
	leader := waitLeader(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var follower *member
	for _, m := range ms {
		if m != leader {
			follower = m
		}
	}
	if _, err := follower.node.Apply(ctx, cmd("x", "y")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("apply on a follower: %v, want ErrNotLeader", err)
	}
	if _, err := leader.node.Apply(ctx, cmd("k1", "v1")); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitValue(t, m, "k1", "v1")
	}
	if st := leader.node.Stats(); st["state"] != "Leader" {
		t.Fatalf("stats state %q", st["state"])
	}

	// Kill the leader: the other two elect a new one and keep the state.
	if err := leader.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var rest []*member
	for _, m := range ms {
		if m != leader {
			rest = append(rest, m)
		}
	}
	newLeader := waitLeader(t, rest)
	if newLeader == leader {
		t.Fatal("old leader still leads")
	}
	if _, err := newLeader.node.Apply(ctx, cmd("k2", "v2")); err != nil {
		t.Fatal(err)
	}

	// Restart the old leader from its directory: it catches up.
	startMember(t, leader)
	waitValue(t, leader, "k1", "v1")
	waitValue(t, leader, "k2", "v2")
	waitLeader(t, ms)
}

func TestLeadershipTransfer(t *testing.T) {
	ms := startGroup(t, 3)
	leader := waitLeader(t, ms)
	if err := leader.node.TransferLeadership(""); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "another leader", func() error {
		if leader.node.IsLeader() {
			return errors.New("still leader")
		}
		return nil
	})
	waitLeader(t, ms)
}

func TestStartValidates(t *testing.T) {
	if _, err := Start(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty config: %v", err)
	}
	cfg := testConfig(t, "127.0.0.1:7000", []string{"127.0.0.2:7000"})
	cfg.FSM = newKV()
	if _, err := Start(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("peers without self: %v", err)
	}
}

// TestOldBoltDirectory: a data directory written before the WAL (it holds
// raft.db) keeps its log store and its state across restarts; a new one
// gets the WAL; a directory with both is refused.
func TestOldBoltDirectory(t *testing.T) {
	ip := testutil.LoopbackIP(t, testPort, testPort+20000)
	m := &member{cfg: testConfig(t, net.JoinHostPort(ip, strconv.Itoa(testPort)), nil)}
	// What the earlier raftutil did: a raft-boltdb store at Dir/raft.db.
	old, err := raftboltdb.NewBoltStore(filepath.Join(m.cfg.Dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	startMember(t, m)
	if got := m.node.LogStore(); got != LogStoreBolt {
		t.Fatalf("log store %q in a directory with raft.db, want %q", got, LogStoreBolt)
	}
	waitLeader(t, []*member{m})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := m.node.Apply(ctx, cmd("a", "1")); err != nil {
		t.Fatal(err)
	}
	if err := m.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	startMember(t, m)
	if got := m.node.LogStore(); got != LogStoreBolt {
		t.Fatalf("log store %q after restart, want %q", got, LogStoreBolt)
	}
	waitValue(t, m, "a", "1")
	if _, err := os.Stat(filepath.Join(m.cfg.Dir, walDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a WAL appeared next to raft.db: %v", err)
	}
	if err := m.node.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// A new directory: the WAL, kept across a restart.
	n := &member{cfg: testConfig(t, m.cfg.ID, nil)}
	startMember(t, n)
	if got := n.node.LogStore(); got != LogStoreWAL {
		t.Fatalf("log store %q in a new directory, want %q", got, LogStoreWAL)
	}
	waitLeader(t, []*member{n})
	if _, err := n.node.Apply(ctx, cmd("b", "2")); err != nil {
		t.Fatal(err)
	}
	if err := n.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	startMember(t, n)
	waitValue(t, n, "b", "2")
	if err := n.node.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Both logs in one directory: refused, nothing opened or changed.
	if err := os.Link(filepath.Join(m.cfg.Dir, "raft.db"), filepath.Join(n.cfg.Dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	n.cfg.FSM = newKV()
	if _, err := Start(n.cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "two raft logs") {
		t.Fatalf("start with raft.db and wal/: %v, want ErrConfig about two raft logs", err)
	}
}

// TestWALTailTruncateThenReopen: a follower whose unacknowledged tail is
// replaced by a new leader's entries has its log tail deleted; the log must
// still open and read after a restart (raft-wal before v0.4.1 sealed the
// segment without an index and then failed every read of it with "sealed
// segment has no index block").
func TestWALTailTruncateThenReopen(t *testing.T) {
	dir := t.TempDir()
	hcl := newHCLogger(slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	store, kind, err := openLogStore(dir, hcl)
	if err != nil || kind != LogStoreWAL {
		t.Fatalf("open: %v %q", err, kind)
	}
	entry := func(i uint64, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("e%d-%d", i, term))}
	}
	for i := uint64(1); i <= 10; i++ {
		if err := store.StoreLogs([]*raft.Log{entry(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLogs([]*raft.Log{entry(8, 2), entry(9, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store, _, err = openLogStore(dir, hcl)
	if err != nil {
		t.Fatalf("reopen after a tail truncation: %v", err)
	}
	defer store.Close()
	last, err := store.LastIndex()
	if err != nil || last != 9 {
		t.Fatalf("last index %d, %v; want 9", last, err)
	}
	for i := uint64(1); i <= 9; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after reopen: %v", i, err)
		}
		want := entry(i, 1)
		if i >= 8 {
			want = entry(i, 2)
		}
		if l.Term != want.Term || string(l.Data) != string(want.Data) {
			t.Fatalf("entry %d: term %d %q, want term %d %q", i, l.Term, l.Data, want.Term, want.Data)
		}
	}
}
