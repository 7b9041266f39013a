package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// fakeMaster places every volume on all known servers, the first one primary.
type fakeMaster struct {
	pb.UnimplementedMasterServer
	mu      sync.Mutex
	servers []string
}

func (f *fakeMaster) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.HeartbeatResponse{IsLeader: true, VolumeSizeLimit: 1 << 30}
	for _, v := range req.Volumes {
		resp.Volumes = append(resp.Volumes, &pb.VolumeLocation{
			VolumeId: v.Id, Primary: f.servers[0], Replicas: append([]string(nil), f.servers...), Writable: true,
		})
	}
	return resp, nil
}

func startFakeMaster(t *testing.T, servers []string) string {
	ip := testutil.LoopbackIP(t, 9333, 19333)
	addr := net.JoinHostPort(ip, "9333")
	gaddr, _ := rpc.GRPCAddr(addr)
	ln, err := net.Listen("tcp", gaddr)
	if err != nil {
		t.Fatal(err)
	}
	gs := rpc.NewServer(nil)
	pb.RegisterMasterServer(gs, &fakeMaster{servers: servers})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return addr
}

type runningServer struct {
	s      *Server
	cancel context.CancelFunc
	done   chan error
}

// replicatedPair is two volume servers under one fake master, each holding
// volume 7 at replication 001, in sync with each other.
type replicatedPair struct {
	ipB, urlA, urlB, master, dirB string
	a, b                          *runningServer
}

func startReplicatedPair(t *testing.T) *replicatedPair {
	t.Helper()
	ipA := testutil.LoopbackIP(t, 8080, 18080)
	ipB := testutil.LoopbackIP(t, 8080, 18080)
	p := &replicatedPair{ipB: ipB, urlA: net.JoinHostPort(ipA, "8080"), urlB: net.JoinHostPort(ipB, "8080"), dirB: t.TempDir()}
	p.master = startFakeMaster(t, []string{p.urlA, p.urlB})
	p.a = startServer(t, ipA, t.TempDir(), p.master)
	p.b = startServer(t, ipB, p.dirB, p.master)
	for _, s := range []*Server{p.a.s, p.b.s} {
		if _, err := s.store.Allocate(7, "", "001"); err != nil {
			t.Fatal(err)
		}
		s.markBehind(7, "test start")
	}
	testutil.WaitFor(t, 30*time.Second, "volume 7 in sync on both", func() error {
		for _, s := range []*Server{p.a.s, p.b.s} {
			if why, behind := s.behind(7); behind {
				return fmt.Errorf("%s: %s", s.URL(), why)
			}
		}
		return nil
	})
	return p
}

func startServer(t *testing.T, ip, dir, master string, opts ...func(*Config)) *runningServer {
	t.Helper()
	cfg := Config{Dir: dir, IP: ip, Port: 8080, Masters: []string{master}, Pulse: 100 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningServer{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(r.stop)
	testutil.WaitFor(t, 20*time.Second, "volume server ready", func() error {
		resp, err := http.Get("http://" + s.URL() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

func (r *runningServer) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

func put(url string, id fid.FileID, data []byte) (int, string) {
	req, _ := http.NewRequest(http.MethodPut, "http://"+url+"/"+id.String(), bytes.NewReader(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(url string, id fid.FileID) (int, []byte) {
	resp, err := http.Get("http://" + url + "/" + id.String())
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestReplicatedWritePath runs two real volume servers with replication 001:
// writes are acknowledged only when both copies have them, a write to the
// secondary is forwarded to the primary, a write with the peer down fails and
// makes the volume out of sync, and a restart of the peer brings both copies
// back to the same content.
func TestReplicatedWritePath(t *testing.T) {
	p := startReplicatedPair(t)
	ipB, urlA, urlB, master, dirB, a, b := p.ipB, p.urlA, p.urlB, p.master, p.dirB, p.a, p.b

	id := fid.FileID{Volume: 7, Key: 1, Cookie: 0xabc}
	if code, body := put(urlA, id, []byte("hello")); code != 201 {
		t.Fatalf("write to primary: %d %s", code, body)
	}
	id2 := fid.FileID{Volume: 7, Key: 2, Cookie: 0xdef}
	if code, body := put(urlB, id2, []byte("via secondary")); code != 201 {
		t.Fatalf("write to secondary (forwarded): %d %s", code, body)
	}
	for _, s := range []*Server{a.s, b.s} {
		v, _ := s.store.Get(7)
		for id, want := range map[fid.FileID]string{id: "hello", id2: "via secondary"} {
			n, err := v.Read(id.Key, id.Cookie)
			if err != nil || string(n.Data) != want {
				t.Fatalf("%s holds %v: %v, %+v", s.URL(), id, err, n)
			}
		}
	}
	if code, body := get(urlB, id); code != 200 || string(body) != "hello" {
		t.Fatalf("read from secondary: %d %q", code, body)
	}
	resp, err := http.Get("http://" + urlB + "/" + id.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf(`"%08x"`, crc32.Checksum([]byte("hello"), crc32.MakeTable(crc32.Castagnoli))); resp.Header.Get("ETag") != want {
		t.Fatalf("read ETag %s, want the CRC32C of the content %s", resp.Header.Get("ETag"), want)
	}
	if code, _ := get(urlA, fid.FileID{Volume: 7, Key: 1, Cookie: 0x1}); code != 404 {
		t.Fatalf("read with wrong cookie: %d, want 404", code)
	}

	// Peer down: the write must fail and the volume leave service.
	b.stop()
	id3 := fid.FileID{Volume: 7, Key: 3, Cookie: 0x333}
	if code, body := put(urlA, id3, []byte("unacknowledged")); code == 201 {
		t.Fatalf("write with a replica down was acknowledged: %s", body)
	}
	if _, behind := a.s.behind(7); !behind {
		t.Fatal("volume 7 still in sync after a failed replicated write")
	}
	if code, body := put(urlA, fid.FileID{Volume: 7, Key: 4, Cookie: 1}, []byte("x")); code != 503 {
		t.Fatalf("write to an out-of-sync volume: %d %s, want 503", code, body)
	}

	// Peer back: catch-up makes both copies equal and writes resume.
	b = startServer(t, ipB, dirB, master)
	testutil.WaitFor(t, 30*time.Second, "volume 7 back in sync", func() error {
		for _, s := range []*Server{a.s, b.s} {
			if why, behind := s.behind(7); behind {
				return errors.New(why)
			}
		}
		return nil
	})
	va, _ := a.s.store.Get(7)
	vb, _ := b.s.store.Get(7)
	ia, ib := va.Index(), vb.Index()
	if len(ia) != len(ib) {
		t.Fatalf("after catch-up the copies differ: %d vs %d keys", len(ia), len(ib))
	}
	for i := range ia {
		if ia[i] != ib[i] {
			t.Fatalf("after catch-up the copies differ at %d: %+v vs %+v", i, ia[i], ib[i])
		}
	}
	if code, body := put(urlA, fid.FileID{Volume: 7, Key: 5, Cookie: 5}, []byte("after")); code != 201 {
		t.Fatalf("write after catch-up: %d %s", code, body)
	}
	// Delete is replicated too.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+urlA+"/"+id.String(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("delete: %v %v", err, resp)
	}
	resp.Body.Close()
	if code, _ := get(urlB, id); code != 404 {
		t.Fatalf("deleted needle still readable on the secondary: %d", code)
	}
}

func TestBadRequests(t *testing.T) {
	ip := testutil.LoopbackIP(t, 8080, 18080)
	master := startFakeMaster(t, []string{net.JoinHostPort(ip, "8080")})
	a := startServer(t, ip, t.TempDir(), master)
	if _, err := a.s.store.Allocate(1, "", "000"); err != nil {
		t.Fatal(err)
	}
	url := a.s.URL()
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/notafid", 400},
		{"GET", "/1,zz", 400},
		{"GET", "/99,0100000001", 404},
		{"PUT", "/99,0100000001", 404},
		{"PATCH", "/1,0100000001", 405},
		{"GET", "/1,0100000001", 404},
	} {
		req, _ := http.NewRequest(c.method, "http://"+url+c.path, bytes.NewReader([]byte("x")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("%s %s: %d %s, want %d with a JSON error", c.method, c.path, resp.StatusCode, body, c.want)
		}
	}
	if v, _ := a.s.store.Get(1); v.Info().NeedleCount != 0 {
		t.Fatal("bad requests changed the volume")
	}
}

// TestLargestNeedleReplicates: a needle of MaxNeedleSize, the largest a
// client may write, is stored on both replicas (its record, with header
// and block checksums, is larger than the needle and must still fit one
// replication message).
func TestLargestNeedleReplicates(t *testing.T) {
	p := startReplicatedPair(t)
	id := fid.FileID{Volume: 7, Key: 99, Cookie: 0x1234}
	data := testPayload(5, MaxNeedleSize)
	if code, body := put(p.urlA, id, data); code != 201 {
		t.Fatalf("put of %d bytes: %d %s", len(data), code, body)
	}
	for _, url := range []string{p.urlA, p.urlB} {
		if code, body := get(url, id); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("read from %s: %d, %d bytes", url, code, len(body))
		}
	}
}
