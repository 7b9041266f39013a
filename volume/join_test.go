package volume

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/internal/vfs"
)

// The tests here pin down the moments of a replica join (a volume copied to
// a new server N while writes go on, then added to the replica set) where a
// write acknowledged by the primary could miss N. Each one holds a step of
// the join at the moment in question, so each fails the same way every run
// when the window is open.

// startJoinMaster serves a joinMaster on a loopback address and returns it
// with its HTTP address.
func startJoinMaster(t *testing.T, servers []string, newbie string) (*joinMaster, string) {
	t.Helper()
	fm := &joinMaster{servers: servers, newbie: newbie, told: map[string]bool{}}
	maddr := net.JoinHostPort(testutil.LoopbackIP(t, 9333, 19333), "9333")
	gaddr, _ := rpc.GRPCAddr(maddr)
	ln, err := net.Listen("tcp", gaddr)
	if err != nil {
		t.Fatal(err)
	}
	gs := rpc.NewServer(nil)
	pb.RegisterMasterServer(gs, fm)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return fm, maddr
}

// stubPeer is a volume server that answers replication and catch-up calls
// from a real store, as a running server does, but has no heartbeat or
// catch-up loop of its own: the test holds its index stream and says what
// its status reports for its volumes.
type stubPeer struct {
	*grpcService
	url string

	mu struct {
		sync.Mutex
		holdIndex   chan struct{} // when set, the next VolumeIndex waits for it to close
		indexAsked  chan struct{} // closed when a held VolumeIndex arrived
		inSync      bool          // what VolumeServerStatus reports
		replicas    []string      // the replica set VolumeServerStatus reports
		statusCalls int
	}
}

func startStubPeer(t *testing.T, ip string) *stubPeer {
	t.Helper()
	url := net.JoinHostPort(ip, "8080")
	s, err := NewServer(Config{Dir: t.TempDir(), IP: ip, Port: 8080, Masters: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &stubPeer{grpcService: &grpcService{s: s}, url: url}
	gaddr, _ := rpc.GRPCAddr(url)
	ln, err := net.Listen("tcp", gaddr)
	if err != nil {
		t.Fatal(err)
	}
	gs := rpc.NewServer(nil)
	pb.RegisterVolumeServer(gs, p)
	go gs.Serve(ln)
	t.Cleanup(func() {
		gs.Stop()
		s.store.Close()
	})
	return p
}

// holdNextIndex makes the next VolumeIndex call wait until the returned
// function is called; asked is closed when that call arrives.
func (p *stubPeer) holdNextIndex() (asked <-chan struct{}, release func()) {
	hold, ask := make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.mu.holdIndex, p.mu.indexAsked = hold, ask
	p.mu.Unlock()
	var once sync.Once
	return ask, func() { once.Do(func() { close(hold) }) }
}

func (p *stubPeer) VolumeIndex(req *pb.VolumeIndexRequest, stream pb.Volume_VolumeIndexServer) error {
	p.mu.Lock()
	hold, ask := p.mu.holdIndex, p.mu.indexAsked
	p.mu.holdIndex, p.mu.indexAsked = nil, nil
	p.mu.Unlock()
	if hold != nil {
		close(ask)
		select {
		case <-hold:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	return p.grpcService.VolumeIndex(req, stream)
}

func (p *stubPeer) setStatus(inSync bool, replicas ...string) {
	p.mu.Lock()
	p.mu.inSync, p.mu.replicas = inSync, replicas
	p.mu.Unlock()
}

func (p *stubPeer) statusCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.statusCalls
}

func (p *stubPeer) VolumeServerStatus(context.Context, *pb.VolumeServerStatusRequest) (*pb.VolumeServerStatusResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.statusCalls++
	resp := &pb.VolumeServerStatusResponse{}
	for _, v := range p.s.store.Volumes() {
		in := v.Info()
		resp.Volumes = append(resp.Volumes, &pb.VolumeInfo{
			Id: in.ID, Collection: in.Collection, Replication: in.Replication, Size: in.Size,
			NeedleCount: in.NeedleCount, InSync: p.mu.inSync, Replicas: slices.Clone(p.mu.replicas),
		})
	}
	return resp, nil
}

// knows returns nil once s reports volume vid in sync with a replica set of
// n members.
func knows(s *Server, vid uint32, n int) error {
	if why, behind := s.behind(vid); behind {
		return fmt.Errorf("%s: volume %d behind: %s", s.URL(), vid, why)
	}
	for _, vi := range s.volumeInfos() {
		if vi.Id == vid {
			if len(vi.Replicas) != n {
				return fmt.Errorf("%s knows replicas %v", s.URL(), vi.Replicas)
			}
			return nil
		}
	}
	return fmt.Errorf("%s does not report volume %d", s.URL(), vid)
}

// heldBody is a request body whose first Read reports that the handler
// started reading it and then waits for release.
type heldBody struct {
	data    []byte
	reading chan struct{}
	release chan struct{}
	started bool
}

func (b *heldBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		close(b.reading)
		<-b.release
	}
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

// TestJoinWriteUsesTheSetItWasGatedWith holds a write on the primary after
// it looked up the volume's placement (the old set {A,B}) and before it
// entered the write gate, lets the primary learn the set {A,B,N} and finish
// its whole catch-up pass, then lets the write go on. The write must reach
// N: it is acknowledged after the primary counted N in sync.
func TestJoinWriteUsesTheSetItWasGatedWith(t *testing.T) {
	ips, urls := threeServers(t)
	fm, maddr := startJoinMaster(t, urls[:2], urls[2])
	a := startServer(t, ips[0], t.TempDir(), maddr)
	b := startServer(t, ips[1], t.TempDir(), maddr)
	n := startServer(t, ips[2], t.TempDir(), maddr)
	for _, s := range []*Server{a.s, b.s, n.s} {
		if _, err := s.store.Allocate(9, "", "001"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the primary placed with the old set", func() error { return knows(a.s, 9, 2) })

	// The body's first read comes after the handler looked up the placement.
	body := &heldBody{data: []byte("acknowledged during the join"), reading: make(chan struct{}), release: make(chan struct{})}
	id := fid.FileID{Volume: 9, Key: 1, Cookie: 7}
	req, _ := http.NewRequest(http.MethodPut, "http://"+urls[0]+"/"+id.String(), body)
	req.ContentLength = int64(len(body.data))
	req.Header.Set("Expect", "100-continue")
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	type answer struct {
		code int
		msg  string
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			done <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, string(msg)}
	}()
	select {
	case <-body.reading:
	case ans := <-done:
		t.Fatalf("the write ended before reading its body: %d %s", ans.code, ans.msg)
	}

	for _, u := range urls {
		fm.tell(u)
	}
	testutil.WaitFor(t, 20*time.Second, "the primary in sync with {A,B,N}", func() error { return knows(a.s, 9, 3) })
	close(body.release)
	ans := <-done
	if ans.code != 201 {
		t.Fatalf("write after the primary counted N in sync: %d %s", ans.code, ans.msg)
	}
	v, _ := n.s.store.Get(9)
	if got, err := v.Read(1, 7); err != nil || string(got.Data) != "acknowledged during the join" {
		t.Fatalf("a write acknowledged after the primary counted the new replica in sync is not on it: %v", err)
	}
}

// TestJoinNoticedDuringACatchUpPass holds the primary's catch-up pass (it
// restarted, so it is behind) at the index of its peer B while the primary
// learns that N joined. The pass was planned with {A,B}; it must not end
// the primary's out-of-sync state, or the primary counts in sync with
// {A,B,N} without ever pushing to N.
func TestJoinNoticedDuringACatchUpPass(t *testing.T) {
	ips, urls := threeServers(t)
	fm, maddr := startJoinMaster(t, urls[:2], urls[2])

	dirA := t.TempDir()
	st, err := OpenStore(vfs.OS, dirA)
	if err != nil {
		t.Fatal(err)
	}
	va, err := st.Allocate(9, "", "001")
	if err != nil {
		t.Fatal(err)
	}
	for k := uint64(1); k <= 10; k++ {
		if err := va.Write(context.Background(), &Needle{Key: k, Cookie: 7, Data: fmt.Appendf(nil, "needle %d", k)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	peerB := startStubPeer(t, ips[1])
	if _, err := peerB.s.store.Allocate(9, "", "001"); err != nil {
		t.Fatal(err)
	}
	asked, release := peerB.holdNextIndex()
	t.Cleanup(release)
	n := startServer(t, ips[2], t.TempDir(), maddr)
	if _, err := n.s.store.Allocate(9, "", "001"); err != nil {
		t.Fatal(err)
	}
	a := startServer(t, ips[0], dirA, maddr) // restarted: behind until a pass succeeds
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the primary's catch-up pass never asked B for its index")
	}
	// The pass waits at B; the primary learns that N joined.
	fm.tell(urls[0])
	testutil.WaitFor(t, 20*time.Second, "the primary learned {A,B,N}", func() error {
		for _, vi := range a.s.volumeInfos() {
			if vi.Id == 9 && len(vi.Replicas) == 3 {
				return nil
			}
		}
		return fmt.Errorf("%s knows %v", a.s.URL(), a.s.location(9).GetReplicas())
	})
	release()
	testutil.WaitFor(t, 30*time.Second, "the primary in sync with {A,B,N}", func() error { return knows(a.s, 9, 3) })
	vn, _ := n.s.store.Get(9)
	for k := uint64(1); k <= 10; k++ {
		if _, err := vn.Read(k, 7); err != nil {
			t.Errorf("the primary counts in sync with {A,B,N} but needle %d is not on N: %v", k, err)
		}
	}
}

// TestJoinedCopyWaitsForThePrimary copies a volume to N from its primary A
// and lets N (only) learn that it joined. N holds everything A had, but A
// still acknowledges writes without N until it learns the new set and
// catches up: N must stay out of sync (and serve reads of what it lacks
// from its peers) until A reports itself in sync with a set that holds N.
func TestJoinedCopyWaitsForThePrimary(t *testing.T) {
	ipA, ipN := testutil.LoopbackIP(t, 8080, 18080), testutil.LoopbackIP(t, 8080, 18080)
	urlA, urlN := net.JoinHostPort(ipA, "8080"), net.JoinHostPort(ipN, "8080")
	fm, maddr := startJoinMaster(t, []string{urlA}, urlN)
	peerA := startStubPeer(t, ipA)
	peerA.setStatus(true, urlA)
	va, err := peerA.s.store.Allocate(9, "", "001")
	if err != nil {
		t.Fatal(err)
	}
	write := func(k uint64) {
		t.Helper()
		if err := va.Write(context.Background(), &Needle{Key: k, Cookie: 7, Data: fmt.Appendf(nil, "needle %d", k)}); err != nil {
			t.Fatal(err)
		}
	}
	for k := uint64(1); k <= 5; k++ {
		write(k)
	}
	n := startServer(t, ipN, t.TempDir(), maddr)
	if _, err := (&grpcService{s: n.s}).CopyVolume(context.Background(), &pb.CopyVolumeRequest{VolumeId: 9, Replication: "001", Source: urlA}); err != nil {
		t.Fatal(err)
	}
	fm.tell(urlN)
	// N's pass runs against A and asks A whether A counts N yet (a pass
	// that ended N's out-of-sync state is the failure).
	testutil.WaitFor(t, 30*time.Second, "N's catch-up pass against A", func() error {
		if _, behind := n.s.behind(9); !behind || peerA.statusCalls() > 0 {
			return nil
		}
		return fmt.Errorf("N has not asked A yet")
	})
	if _, behind := n.s.behind(9); !behind {
		t.Fatal("the new copy counts in sync while the primary does not write to it yet")
	}
	// A acknowledges a write with its old set; N serves it from A.
	write(6)
	if code, body := get(urlN, fid.FileID{Volume: 9, Key: 6, Cookie: 7}); code != 200 || string(body) != "needle 6" {
		t.Fatalf("read on the new copy of a needle the primary acknowledged without it: %d %q", code, body)
	}
	// A learned the set with N but has not caught up yet.
	peerA.setStatus(false, urlA, urlN)
	calls := peerA.statusCalls()
	testutil.WaitFor(t, 30*time.Second, "another pass of N", func() error {
		if peerA.statusCalls() > calls {
			return nil
		}
		return fmt.Errorf("%d status calls", peerA.statusCalls())
	})
	if _, behind := n.s.behind(9); !behind {
		t.Fatal("the new copy counts in sync while the primary is still catching up")
	}
	// A is in sync with {A,N}: it pushed what N lacked (as its pass does)
	// and writes to N from now on.
	rec, err := va.ReadRecord(6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&grpcService{s: n.s}).Replicate(context.Background(), &pb.ReplicateRequest{VolumeId: 9, Record: rec}); err != nil {
		t.Fatal(err)
	}
	peerA.setStatus(true, urlA, urlN)
	testutil.WaitFor(t, 30*time.Second, "N in sync", func() error {
		if why, behind := n.s.behind(9); behind {
			return fmt.Errorf("%s", why)
		}
		return nil
	})
}
