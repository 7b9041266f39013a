package volume

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// joinMaster places every volume on servers, plus newbie in the answers to
// the servers in told: each server learns of the new member when the test
// says so.
type joinMaster struct {
	pb.UnimplementedMasterServer
	mu      sync.Mutex
	servers []string
	newbie  string
	told    map[string]bool
}

func (f *joinMaster) tell(url string) {
	f.mu.Lock()
	f.told[url] = true
	f.mu.Unlock()
}

func (f *joinMaster) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	replicas := slices.Clone(f.servers)
	if f.told[req.Url] {
		replicas = append(replicas, f.newbie)
	}
	resp := &pb.HeartbeatResponse{IsLeader: true, VolumeSizeLimit: 1 << 30}
	for _, v := range req.Volumes {
		if slices.Contains(replicas, req.Url) {
			resp.Volumes = append(resp.Volumes, &pb.VolumeLocation{VolumeId: v.Id, Primary: f.servers[0], Replicas: replicas, Writable: true})
		}
	}
	return resp, nil
}

// TestCopyVolumeJoin copies a volume to a third server while a writer keeps
// writing, then lets the fake master add it to the replica set. Every write
// acknowledged before, during or after the copy ends up on the new replica:
// the copy starts out of sync and stays so until the primary counts it, and
// the primary, on learning that the set grew, refuses writes, waits for the
// ones in flight and pushes what the new replica lacks.
func TestCopyVolumeJoin(t *testing.T) {
	ips, urls := threeServers(t)
	fm, maddr := startJoinMaster(t, urls[:2], urls[2])

	a := startServer(t, ips[0], t.TempDir(), maddr)
	b := startServer(t, ips[1], t.TempDir(), maddr)
	n := startServer(t, ips[2], t.TempDir(), maddr)
	for _, s := range []*Server{a.s, b.s} {
		if _, err := s.store.Allocate(9, "", "001"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "volume 9 in sync", func() error {
		for _, s := range []*Server{a.s, b.s} {
			if why, behind := s.behind(9); behind {
				return fmt.Errorf("%s: %s", s.URL(), why)
			}
		}
		return nil
	})

	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var key atomic.Uint64
	write := func() {
		k := key.Add(1)
		d := []byte(fmt.Sprintf("needle %d", k))
		if code, _ := put(urls[0], fid.FileID{Volume: 9, Key: k, Cookie: 7}, d); code == 201 {
			mu.Lock()
			acked[k] = d
			mu.Unlock()
		}
	}
	for range 50 {
		write()
	}
	mu.Lock()
	early := len(acked)
	mu.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			write()
		}
	}()

	resp, err := (&grpcService{s: n.s}).CopyVolume(context.Background(), &pb.CopyVolumeRequest{VolumeId: 9, Replication: "001", Source: urls[1]})
	if err != nil || resp.Records < uint64(early) {
		t.Fatalf("copy: %v %v", resp, err)
	}
	if why, behind := n.s.behind(9); !behind {
		t.Fatal("a fresh copy is in sync before it joined the replica set")
	} else {
		t.Logf("copied %d records; new copy is behind: %s", resp.Records, why)
	}
	if _, err := (&grpcService{s: n.s}).CopyVolume(context.Background(), &pb.CopyVolumeRequest{VolumeId: 9, Replication: "001", Source: urls[1]}); err == nil {
		t.Fatal("a second copy over the first succeeded")
	}
	// Writes keep going while the copy is outside the set.
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	testutil.WaitFor(t, 30*time.Second, "more writes after the copy", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < before+20 {
			return fmt.Errorf("%d acknowledged, want %d", len(acked), before+20)
		}
		return nil
	})
	if _, behind := n.s.behind(9); !behind {
		t.Fatal("the copy counted as in sync before the master listed it")
	}
	// The new replica and the secondary learn of the new set first; the
	// primary still writes with the old set, so the new copy lacks writes
	// it acknowledges: the copy must not count in sync, and reads of those
	// writes on it are served from its peers.
	fm.tell(urls[2])
	fm.tell(urls[1])
	latest := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		var last uint64
		for k := range acked {
			last = max(last, k)
		}
		return last
	}
	// Three times: the newest acknowledged needle reaches the new copy
	// (its catch-up passes pull it, again and again while it waits for the
	// primary), unless the copy ended its out-of-sync state meanwhile.
	vn, _ := n.s.store.Get(9)
	for round := range 3 {
		k := latest()
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("round %d: the new copy pulls needle %d or counts in sync", round, k), func() error {
			if _, behind := n.s.behind(9); !behind {
				return nil
			}
			if _, err := vn.Read(k, 7); err != nil {
				return fmt.Errorf("needle %d on the new copy: %w", k, err)
			}
			return nil
		})
		if _, behind := n.s.behind(9); !behind {
			t.Fatal("the new copy counts in sync while the primary acknowledges writes without it")
		}
	}
	last := latest()
	mu.Lock()
	want := acked[last]
	mu.Unlock()
	if code, got := get(urls[2], fid.FileID{Volume: 9, Key: last, Cookie: 7}); code != 200 || string(got) != string(want) {
		t.Fatalf("read on the new copy of needle %d, acknowledged with the old set: %d %q", last, code, got)
	}
	fm.tell(urls[0])
	testutil.WaitFor(t, 30*time.Second, "all three in sync with the new set", func() error {
		for _, s := range []*Server{a.s, b.s, n.s} {
			if why, behind := s.behind(9); behind {
				return fmt.Errorf("%s: %s", s.URL(), why)
			}
			for _, vi := range s.volumeInfos() {
				if vi.Id == 9 && len(vi.Replicas) != 3 {
					return fmt.Errorf("%s knows replicas %v", s.URL(), vi.Replicas)
				}
			}
		}
		return nil
	})
	stop()
	wg.Wait()
	// Writes after the join reach the new replica directly.
	for range 20 {
		write()
	}
	mu.Lock()
	defer mu.Unlock()
	v, _ := n.s.store.Get(9)
	var keys []uint64
	for k, d := range acked {
		keys = append(keys, k)
		got, err := v.Read(k, 7)
		if err != nil || string(got.Data) != string(d) {
			t.Errorf("acknowledged needle %d missing on the new replica: %v", k, err)
		}
	}
	slices.Sort(keys)
	t.Logf("%d acknowledged writes (keys up to %d), all on the new replica", len(keys), key.Load())
}

// threeServers picks three free loopback addresses for volume servers on
// port 8080 and returns them with the servers' URLs.
func threeServers(t *testing.T) (ips, urls []string) {
	t.Helper()
	for range 3 {
		ip := testutil.LoopbackIP(t, 8080, 18080)
		ips = append(ips, ip)
		urls = append(urls, net.JoinHostPort(ip, "8080"))
	}
	return ips, urls
}
