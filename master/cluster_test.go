package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

const (
	testMasterPort = 9333
	testVolumePort = 8080
	testPulse      = 300 * time.Millisecond
)

var testClient = &http.Client{Timeout: 20 * time.Second}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testMaster is one in-process master run by a test.
type testMaster struct {
	m      *Master
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
}

func (tm *testMaster) stop(t *testing.T) {
	t.Helper()
	tm.cancel()
	select {
	case <-tm.done:
		if tm.err != nil {
			t.Errorf("master %s stopped with %v", tm.m.Addr(), tm.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("master %s did not stop", tm.m.Addr())
	}
}

func startMasters(t *testing.T, n int, limit uint64) []*testMaster {
	t.Helper()
	return runMasters(t, pickPeers(t, n), func(c *Config) { c.VolumeSizeLimit = limit })
}

// pickPeers returns n master HTTP addresses on free loopback addresses.
func pickPeers(t *testing.T, n int) []string {
	t.Helper()
	var peers []string
	for range n {
		ip := testutil.LoopbackIP(t, testMasterPort, testMasterPort+10000, testMasterPort+20000)
		peers = append(peers, net.JoinHostPort(ip, strconv.Itoa(testMasterPort)))
	}
	return peers
}

// runMasters runs one master per peer until the test ends; mod adjusts
// each configuration.
func runMasters(t *testing.T, peers []string, mod func(*Config)) []*testMaster {
	t.Helper()
	var ms []*testMaster
	for _, p := range peers {
		host, _, _ := net.SplitHostPort(p)
		cfg := Config{
			Dir: t.TempDir(), IP: host, Port: testMasterPort, Peers: peers,
			Pulse: testPulse, Logger: quiet, RaftTimeout: 500 * time.Millisecond,
		}
		mod(&cfg)
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tm := &testMaster{m: m, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(tm.done)
			tm.err = m.Run(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-tm.done
		})
		ms = append(ms, tm)
	}
	return ms
}

// waitLeader waits until every given master agrees on a leader among them.
func waitLeader(t *testing.T, ms []*testMaster) *testMaster {
	t.Helper()
	var leader *testMaster
	testutil.WaitFor(t, 20*time.Second, "a master leader", func() error {
		leader = nil
		for _, tm := range ms {
			if _, _, ok := tm.m.leaderEpoch(); ok {
				leader = tm
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, tm := range ms {
			if err := tm.m.Ready(); err != nil {
				return err
			}
			if l := tm.m.node.Load().LeaderHTTP(); l != leader.m.Addr() {
				return fmt.Errorf("%s follows %q, not %s", tm.m.Addr(), l, leader.m.Addr())
			}
		}
		return nil
	})
	return leader
}

// fakeVolume is an in-process volume server: a gRPC Volume service that
// allocates volumes in memory and a heartbeat loop reporting them in sync.
type fakeVolume struct {
	pb.UnimplementedVolumeServer
	url, dc, rack string
	masters       []string
	pool          *rpc.Pool
	kick          chan struct{}

	mu        sync.Mutex // guards the fields below
	vols      map[uint32]*pb.VolumeInfo
	hidden    map[uint32]bool // volumes left out of heartbeats
	paused    bool            // no heartbeats at all
	leader    string
	locations map[uint32]*pb.VolumeLocation // from the last heartbeat reply
	failAlloc bool                          // AllocateVolume fails, as on a server that just died
	allocs    int                           // AllocateVolume calls
}

func startVolume(t *testing.T, masters []string, dc, rack string) *fakeVolume {
	t.Helper()
	return startVolumeOn(t, testutil.LoopbackIP(t, testVolumePort, testVolumePort+10000), masters, dc, rack, nil)
}

func startVolumeOn(t *testing.T, ip string, masters []string, dc, rack string, sec *security.Config) *fakeVolume {
	t.Helper()
	v := &fakeVolume{
		url: net.JoinHostPort(ip, strconv.Itoa(testVolumePort)), dc: dc, rack: rack,
		masters: masters, pool: rpc.NewPool(sec), kick: make(chan struct{}, 1),
		vols: map[uint32]*pb.VolumeInfo{}, hidden: map[uint32]bool{}, locations: map[uint32]*pb.VolumeLocation{},
	}
	ga, _ := rpc.GRPCAddr(v.url)
	ln, err := net.Listen("tcp", ga)
	if err != nil {
		t.Fatal(err)
	}
	gs := rpc.NewServer(sec)
	pb.RegisterVolumeServer(gs, v)
	go gs.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.heartbeatLoop(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		gs.Stop()
		v.pool.Close()
	})
	return v
}

func (v *fakeVolume) AllocateVolume(_ context.Context, req *pb.AllocateVolumeRequest) (*pb.AllocateVolumeResponse, error) {
	v.mu.Lock()
	v.allocs++
	if v.failAlloc {
		v.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	if _, ok := v.vols[req.VolumeId]; !ok {
		v.vols[req.VolumeId] = &pb.VolumeInfo{Id: req.VolumeId, Collection: req.Collection, Replication: req.Replication, InSync: true, Size: 8}
	}
	v.mu.Unlock()
	select { // report the new volume right away
	case v.kick <- struct{}{}:
	default:
	}
	return &pb.AllocateVolumeResponse{}, nil
}

func (v *fakeVolume) DeleteVolume(_ context.Context, req *pb.DeleteVolumeRequest) (*pb.DeleteVolumeResponse, error) {
	v.mu.Lock()
	delete(v.vols, req.VolumeId)
	v.mu.Unlock()
	return &pb.DeleteVolumeResponse{}, nil
}

func (v *fakeVolume) set(fn func(v *fakeVolume)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(v)
}

func (v *fakeVolume) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(testPulse)
	defer t.Stop()
	next := 0
	for {
		v.mu.Lock()
		req := &pb.HeartbeatRequest{Url: v.url, PublicUrl: v.url, Dc: v.dc, Rack: v.rack, MaxVolumes: 8, FreeBytes: 1 << 30}
		for id, vi := range v.vols {
			if !v.hidden[id] {
				req.Volumes = append(req.Volumes, vi)
			}
		}
		paused, target := v.paused, v.leader
		v.mu.Unlock()
		if target == "" {
			target = v.masters[next%len(v.masters)]
		}
		if !paused {
			for range 2 { // once more when redirected to the leader
				resp, err := v.beat(ctx, target, req)
				if err != nil {
					next++
					v.set(func(v *fakeVolume) { v.leader = "" })
					break
				}
				if resp.IsLeader {
					v.set(func(v *fakeVolume) {
						v.leader = target
						for _, l := range resp.Volumes {
							v.locations[l.VolumeId] = l
						}
					})
					break
				}
				if resp.Leader == "" {
					next++
					break
				}
				target = resp.Leader
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-v.kick:
		}
	}
}

func (v *fakeVolume) beat(ctx context.Context, master string, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	conn, err := v.pool.Conn(master)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return pb.NewMasterClient(conn).Heartbeat(ctx, req)
}

func httpGet(url string, out any) (int, error) {
	return httpGetWith(testClient, url, out)
}

func httpGetWith(c *http.Client, url string, out any) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w", b, err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, nil
}

// keyLog records every file key handed out and fails on a repeat.
type keyLog struct {
	mu   sync.Mutex
	seen map[uint64]string
}

func (k *keyLog) add(t *testing.T, a AssignJSON) {
	t.Helper()
	if err := k.check(a); err != nil {
		t.Fatal(err)
	}
}

// check records a and returns an error if it repeats a key; safe to call
// from any goroutine.
func (k *keyLog) check(a AssignJSON) error {
	id, err := fid.Parse(a.Fid)
	if err != nil {
		return err
	}
	if id.Cookie == 0 {
		return fmt.Errorf("fid %s has a zero cookie", a.Fid)
	}
	if a.Count == 0 {
		return fmt.Errorf("fid %s with count 0", a.Fid)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range uint64(a.Count) {
		if prev, ok := k.seen[id.Key+i]; ok {
			return fmt.Errorf("key %d handed out twice: %s and %s", id.Key+i, prev, a.Fid)
		}
		k.seen[id.Key+i] = a.Fid
	}
	return nil
}

// assignHTTP assigns through master addr, waiting out 503s (elections, grace
// periods, growth).
func assignHTTP(t *testing.T, addr, query string) AssignJSON {
	t.Helper()
	var a AssignJSON
	testutil.WaitFor(t, 20*time.Second, "assign via "+addr, func() error {
		a = AssignJSON{}
		code, err := httpGet("http://"+addr+"/dir/assign?"+query, &a)
		if code != http.StatusOK && code != http.StatusServiceUnavailable && code != 0 {
			t.Fatalf("assign via %s: %v", addr, err)
		}
		return err
	})
	return a
}

func statusOf(t *testing.T, addr string) StatusJSON {
	t.Helper()
	var st StatusJSON
	if _, err := httpGet("http://"+addr+"/cluster/status", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func volumeStatus(st StatusJSON, id uint32) (VolumeJSON, bool) {
	for _, v := range st.Volumes {
		if v.ID == id {
			return v, true
		}
	}
	return VolumeJSON{}, false
}

func TestCluster(t *testing.T) {
	ms := startMasters(t, 3, 1<<20)
	var addrs []string
	for _, tm := range ms {
		addrs = append(addrs, tm.m.Addr())
	}
	leader := waitLeader(t, ms)
	vols := []*fakeVolume{
		startVolume(t, addrs, "dc1", "r1"),
		startVolume(t, addrs, "dc1", "r1"),
		startVolume(t, addrs, "dc1", "r1"),
		startVolume(t, addrs, "dc1", "r2"),
	}
	byURL := map[string]*fakeVolume{}
	for _, v := range vols {
		byURL[v.url] = v
	}
	keys := &keyLog{seen: map[uint64]string{}}

	// Assign through every master: followers forward to the leader.
	var first AssignJSON
	for _, a := range addrs {
		got := assignHTTP(t, a, "replication=001")
		keys.add(t, got)
		if byURL[got.URL] == nil || got.PublicURL != got.URL || got.Count != 1 {
			t.Fatalf("assign via %s: %+v", a, got)
		}
		first = got
	}
	batch := assignHTTP(t, addrs[0], "replication=001&count=5")
	if batch.Count != 5 {
		t.Fatalf("count=5 answered %+v", batch)
	}
	keys.add(t, batch)
	fidFirst, _ := fid.Parse(first.Fid)
	vid := fidFirst.Volume

	t.Run("lookup", func(t *testing.T) {
		follower := addrs[0]
		if follower == leader.m.Addr() {
			follower = addrs[1]
		}
		var lk LookupJSON
		if _, err := httpGet("http://"+follower+"/dir/lookup?volumeId="+first.Fid, &lk); err != nil {
			t.Fatal(err)
		}
		if lk.VolumeOrFileID != first.Fid || len(lk.Locations) != 2 || lk.Locations[0].URL != first.URL {
			t.Fatalf("lookup %s: %+v", first.Fid, lk)
		}
		var missing LookupJSON
		code, _ := httpGet("http://"+follower+"/dir/lookup?volumeId=999", &missing)
		if code != http.StatusNotFound || missing.VolumeOrFileID != "999" || missing.Error != "volume 999 not found" {
			t.Fatalf("unknown volume: %d %+v", code, missing)
		}

		// gRPC on a follower forwards too.
		pool := rpc.NewPool(nil)
		defer pool.Close()
		conn, err := pool.Conn(follower)
		if err != nil {
			t.Fatal(err)
		}
		c := pb.NewMasterClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lr, err := c.Lookup(ctx, &pb.LookupRequest{VolumeId: vid})
		if err != nil || lr.Primary != first.URL || len(lr.Locations) != 2 || !lr.Writable {
			t.Fatalf("gRPC lookup: %v %v", lr, err)
		}
		ar, err := c.Assign(ctx, &pb.AssignRequest{Replication: "001"})
		if err != nil {
			t.Fatalf("gRPC assign: %v", err)
		}
		keys.add(t, AssignJSON{Fid: ar.Fid, Count: ar.Count})
		cs, err := c.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil || cs.IsLeader || cs.Leader != leader.m.Addr() || len(cs.Peers) != 3 {
			t.Fatalf("gRPC status on follower: %v %v", cs, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		var e map[string]string
		code, _ := httpGet("http://"+addrs[1]+"/dir/assign?replication=0x1", &e)
		if code != http.StatusBadRequest || !strings.Contains(e["error"], "three digits") {
			t.Fatalf("bad replication: %d %v", code, e)
		}
		code, _ = httpGet("http://"+leader.m.Addr()+"/dir/assign?replication=100", &e)
		if code != http.StatusServiceUnavailable || !strings.Contains(e["error"], "replication 100 needs 2 servers") ||
			!strings.Contains(e["error"], "of 4 alive servers") {
			t.Fatalf("not enough data centers: %d %v", code, e)
		}
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, err := httpGet("http://"+addrs[2]+p, nil); code != http.StatusOK {
				t.Fatalf("%s: %v", p, err)
			}
		}
		resp, err := testClient.Get("http://" + leader.m.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`cairn_master_requests_total{api="assign",code="200"}`,
			`cairn_master_requests_total{api="heartbeat",code="OK"}`,
			"cairn_master_raft_state 2",
			"cairn_master_servers_alive 4",
			"cairn_master_assign_duration_seconds_count",
			"go_goroutines",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		st := statusOf(t, leader.m.Addr())
		v, ok := volumeStatus(st, vid)
		if !st.IsLeader || len(st.Peers) != 3 || len(st.Servers) != 4 || !ok || !v.Writable || v.Primary != first.URL {
			t.Fatalf("status: %+v", st)
		}
		for _, s := range st.Servers {
			if !s.Alive {
				t.Fatalf("server %s not alive: %+v", s.URL, st)
			}
		}
	})

	t.Run("replica loss", func(t *testing.T) {
		// A replica that stops reporting the volume makes it read-only at once.
		replica := byURL[first.URL]
		replica.set(func(v *fakeVolume) { v.hidden[vid] = true })
		testutil.WaitFor(t, 10*time.Second, "volume read-only after the replica dropped it", func() error {
			v, _ := volumeStatus(statusOf(t, leader.m.Addr()), vid)
			if v.Writable || !strings.Contains(v.Reason, "does not report") {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})
		replica.set(func(v *fakeVolume) { delete(v.hidden, vid) })
		testutil.WaitFor(t, 10*time.Second, "volume writable again", func() error {
			if v, _ := volumeStatus(statusOf(t, leader.m.Addr()), vid); !v.Writable {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})

		// A primary whose server stops heartbeating: read-only within the
		// dead timeout, then the primary moves to the other replica.
		stopped := time.Now()
		replica.set(func(v *fakeVolume) { v.paused = true })
		defer replica.set(func(v *fakeVolume) { v.paused = false })
		testutil.WaitFor(t, 10*time.Second, "volume read-only after its primary went silent", func() error {
			v, _ := volumeStatus(statusOf(t, leader.m.Addr()), vid)
			if v.Writable {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})
		if d := time.Since(stopped); d > 3*testPulse+2*time.Second {
			t.Errorf("took %v to notice a dead replica", d)
		}
		testutil.WaitFor(t, 10*time.Second, "primary moved off the dead server", func() error {
			v, _ := volumeStatus(statusOf(t, leader.m.Addr()), vid)
			if v.Primary == first.URL {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})
		// Assigns go elsewhere meanwhile.
		a := assignHTTP(t, addrs[2], "replication=001")
		keys.add(t, a)
		if id, _ := fid.Parse(a.Fid); id.Volume == vid {
			t.Fatalf("assigned %s on a read-only volume", a.Fid)
		}
	})

	t.Run("leader kill", func(t *testing.T) {
		for range 20 {
			keys.add(t, assignHTTP(t, addrs[0], "replication=001&count=3"))
		}
		// Clients keep assigning through every master while the leader dies.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, a := range addrs {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					var got AssignJSON
					if _, err := httpGet("http://"+a+"/dir/assign?replication=001&count="+strconv.Itoa(1+n%3), &got); err != nil {
						// Elections and dead masters answer 503 or refuse; back off a little.
						select {
						case <-ctx.Done():
						case <-time.After(10 * time.Millisecond):
						}
						continue
					}
					if err := keys.check(got); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		defer func() {
			cancel()
			wg.Wait()
		}()
		leader.stop(t)
		var rest []*testMaster
		for _, tm := range ms {
			if tm != leader {
				rest = append(rest, tm)
			}
		}
		killed := time.Now()
		newLeader := waitLeader(t, rest)
		a := assignHTTP(t, rest[0].m.Addr(), "replication=001")
		keys.add(t, a)
		if d := time.Since(killed); d > 15*time.Second {
			t.Errorf("new leader %s took %v to serve assigns", newLeader.m.Addr(), d)
		}
		for i := range 20 {
			keys.add(t, assignHTTP(t, rest[i%2].m.Addr(), "replication=001&count=2"))
		}
		if st := statusOf(t, newLeader.m.Addr()); st.MaxFileKey < 20000 {
			t.Fatalf("new leader did not lease a fresh block: max key %d", st.MaxFileKey)
		}
		cancel()
		wg.Wait()
		keys.mu.Lock()
		n := len(keys.seen)
		keys.mu.Unlock()
		t.Logf("%d distinct keys handed out", n)
	})
}

func TestRunListenError(t *testing.T) {
	ip := testutil.LoopbackIP(t, testMasterPort, testMasterPort+10000, testMasterPort+20000)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(testMasterPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, err := New(Config{Dir: t.TempDir(), IP: ip, Port: testMasterPort, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a busy port: %v", err)
	}
	if err := m.Ready(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Ready: %v", err)
	}
}

// TestFailedGrowthLeavesNothing: a growth that cannot create the volume on
// every chosen server (one of them just died, and the master does not know
// yet) removes it from the others, and assigns within the next pulse get
// the same error without trying again. Before, every retrying client left
// one more empty volume on the healthy servers until their slots ran out.
func TestFailedGrowthLeavesNothing(t *testing.T) {
	ms := startMasters(t, 1, 100)
	waitLeader(t, ms)
	addr := ms[0].m.Addr()
	good := startVolume(t, []string{addr}, "dc1", "r1")
	dying := startVolume(t, []string{addr}, "dc1", "r1")
	dying.set(func(v *fakeVolume) { v.failAlloc = true })
	var e map[string]string
	testutil.WaitFor(t, 20*time.Second, "an assign to try growing", func() error {
		code, err := httpGet("http://"+addr+"/dir/assign?replication=001", &e)
		if code == http.StatusServiceUnavailable && strings.Contains(fmt.Sprint(err, e), "could not create volume") {
			return nil
		}
		return fmt.Errorf("assign: %d %v %v", code, err, e)
	})
	var allocs int
	good.set(func(v *fakeVolume) { allocs = v.allocs })
	for range 5 {
		if code, _ := httpGet("http://"+addr+"/dir/assign?replication=001", &e); code != http.StatusServiceUnavailable {
			t.Fatalf("assign with a failing server: %d %v", code, e)
		}
	}
	good.set(func(v *fakeVolume) {
		if len(v.vols) != 0 {
			t.Errorf("the healthy server keeps %d volumes from failed growths", len(v.vols))
		}
		if v.allocs-allocs > 1 {
			t.Errorf("%d more growth attempts within a pulse of a failure, want at most 1", v.allocs-allocs)
		}
	})
	// Once the server works again, growth succeeds.
	dying.set(func(v *fakeVolume) { v.failAlloc = false })
	testutil.WaitFor(t, 20*time.Second, "an assign after the server recovered", func() error {
		var a AssignJSON
		_, err := httpGet("http://"+addr+"/dir/assign?replication=001", &a)
		return err
	})
}

func TestSingleMaster(t *testing.T) {
	ms := startMasters(t, 1, 100)
	waitLeader(t, ms)
	addr := ms[0].m.Addr()
	var e map[string]string
	if code, _ := httpGet("http://"+addr+"/readyz", &e); code != http.StatusOK {
		t.Fatalf("readyz: %d %v", code, e)
	}
	v := startVolume(t, []string{addr}, "", "")
	// Concurrent assigns on an empty cluster grow exactly one volume.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]bool{}
	for range 8 {
		wg.Go(func() {
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				var a AssignJSON
				code, err := httpGet("http://"+addr+"/dir/assign", &a)
				if err == nil {
					mu.Lock()
					got[a.Fid] = true
					mu.Unlock()
					return
				}
				if code != http.StatusServiceUnavailable {
					t.Errorf("assign: %v", err)
					return
				}
				time.Sleep(20 * time.Millisecond) // client back-off between retries
			}
			t.Error("assign did not succeed within 20s")
		})
	}
	wg.Wait()
	if len(got) != 8 {
		t.Fatalf("%d distinct fids from 8 assigns", len(got))
	}
	if st := statusOf(t, addr); len(st.Volumes) != 1 {
		t.Fatalf("concurrent assigns grew %d volumes: %+v", len(st.Volumes), st.Volumes)
	}
	a := assignHTTP(t, addr, "")
	id, _ := fid.Parse(a.Fid)
	if a.URL != v.url {
		t.Fatalf("assign: %+v", a)
	}
	// Filling the volume past the limit turns it read-only: a new one grows.
	v.set(func(v *fakeVolume) { v.vols[id.Volume].Size = 100 })
	testutil.WaitFor(t, 10*time.Second, "full volume read-only", func() error {
		vs, _ := volumeStatus(statusOf(t, addr), id.Volume)
		if vs.Writable || !strings.Contains(vs.Reason, "full") {
			return fmt.Errorf("%+v", vs)
		}
		return nil
	})
	b := assignHTTP(t, addr, "")
	if idb, _ := fid.Parse(b.Fid); idb.Volume == id.Volume {
		t.Fatalf("assigned on a full volume: %s", b.Fid)
	}
	st := statusOf(t, addr)
	if len(st.Volumes) != 2 || !slices.ContainsFunc(st.Volumes, func(v VolumeJSON) bool { return v.Writable }) {
		t.Fatalf("status %+v", st)
	}
}
