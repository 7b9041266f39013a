package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// needlesOnVolumes lists the live needles of every volume on the servers.
func needlesOnVolumes(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	pool := rpc.NewPool(nil)
	defer pool.Close()
	var out []string
	for _, v := range c.Volumes {
		conn, err := pool.Conn(v.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		vc := pb.NewVolumeClient(conn)
		st, err := vc.VolumeServerStatus(context.Background(), &pb.VolumeServerStatusRequest{})
		if err != nil {
			t.Fatalf("status of %s: %v", v.Name, err)
		}
		for _, vol := range st.Volumes {
			stream, err := vc.VolumeIndex(context.Background(), &pb.VolumeIndexRequest{VolumeId: vol.Id})
			if err != nil {
				t.Fatal(err)
			}
			for {
				e, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !e.Deleted {
					out = append(out, fid.FileID{Volume: vol.Id, Key: e.Key, Cookie: e.Cookie}.String())
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func httpDo(method, url string, body []byte) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestFilerGCExact runs a random workload of writes, overwrites, deletes,
// snapshots and clones through a filer while the filer and the volume
// server are SIGKILLed, then checks that once the delete queue drains (and
// abandoned uploads expire) the needles on the volume server are exactly
// those the namespace still references: nothing leaked, nothing referenced
// deleted.
func TestFilerGCExact(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1,
		FilerArgs: []string{"--upload-timeout", "3s"}})
	fc := filer.NewClient(c.FilerAddrs(), nil)
	defer fc.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	filerURL := func() string { return "http://" + c.Filers[0].HTTP }

	// Writers: overwrite and delete files under /gc/dN while the main
	// goroutine takes snapshots and clones and kills processes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/gc/d%d/f%d", w, r.IntN(6))
				if r.IntN(4) == 0 {
					_, _, _ = httpDo(http.MethodDelete, filerURL()+p, nil)
					continue
				}
				body := bytes.Repeat([]byte{byte(r.Uint32())}, 1+r.IntN(64<<10))
				if code, _, err := httpDo(http.MethodPut, filerURL()+p, body); err == nil && code == 201 {
					mu.Lock()
					written++
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond) // back off while a process restarts
				}
			}
		}()
	}
	progress := func(n int) {
		mu.Lock()
		start := written
		mu.Unlock()
		testutil.WaitFor(t, 90*time.Second, "filer writes to progress", func() error {
			mu.Lock()
			defer mu.Unlock()
			if written-start < n {
				return fmt.Errorf("%d of %d writes", written-start, n)
			}
			return nil
		})
	}
	progress(20)
	var snaps []uint64
	for round := range 6 {
		gc, err := fc.Resolve(ctx, "/gc")
		if err != nil {
			t.Fatal(err)
		}
		res, err := fc.Apply(ctx, &filer.Snapshot{SrcIno: gc.Ino, Name: fmt.Sprintf("s%d", round)})
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		snaps = append(snaps, res.Snapshot.ID)
		if _, err := fc.Apply(ctx, &filer.Clone{SnapshotID: res.Snapshot.ID, DstParent: filer.RootIno, Name: fmt.Sprintf("clone%d", round)}); err != nil {
			t.Fatalf("clone: %v", err)
		}
		if round%2 == 1 { // drop an older snapshot and a clone
			i := rng.IntN(len(snaps))
			if _, err := fc.Apply(ctx, &filer.DeleteSnapshot{ID: snaps[i]}); err != nil {
				t.Fatalf("delete snapshot: %v", err)
			}
			snaps = append(snaps[:i], snaps[i+1:]...)
			if code, body, err := httpDo(http.MethodDelete, fmt.Sprintf("%s/clone%d?recursive=true", filerURL(), round-1), nil); err != nil || code != 204 {
				t.Fatalf("delete clone: %d %s %v", code, body, err)
			}
		}
		victim := c.Filers[0]
		if round%2 == 1 {
			victim = c.Volumes[0]
		}
		victim.Kill()
		victim.Start(t)
		c.WaitVolumesRegistered(t)
		c.WaitFilerLeader(t)
		progress(10)
		t.Logf("round %d: snapshot, clone, SIGKILL of %s", round, victim.Name)
	}
	close(stop)
	wg.Wait()

	// Let the queue drain and abandoned uploads expire.
	testutil.WaitFor(t, 90*time.Second, "delete queue drained and no upload in flight", func() error {
		var pending []string
		if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "pending_deletes", Limit: 10}, &pending); err != nil {
			return err
		}
		var uploads int
		if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "uploads"}, &uploads); err != nil {
			return err
		}
		if len(pending) > 0 || uploads > 0 {
			return fmt.Errorf("%d+ needles queued, %d uploads in flight", len(pending), uploads)
		}
		return nil
	})
	var referenced []string
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "referenced"}, &referenced); err != nil {
		t.Fatal(err)
	}
	onDisk := needlesOnVolumes(t, c)
	if len(referenced) == 0 {
		t.Fatal("workload left no referenced needle; the test checked nothing")
	}
	var missing, leaked []string
	for _, f := range referenced {
		if _, ok := slices.BinarySearch(onDisk, f); !ok {
			missing = append(missing, f)
		}
	}
	for _, f := range onDisk {
		if _, ok := slices.BinarySearch(referenced, f); !ok {
			leaked = append(leaked, f)
		}
	}
	if len(missing)+len(leaked) > 0 {
		t.Fatalf("needles referenced but gone: %d %v; needles stored but unreferenced: %d %v",
			len(missing), head(missing), len(leaked), head(leaked))
	}
	t.Logf("%d writes; %d needles referenced, exactly the %d on the volume server", written, len(referenced), len(onDisk))
}

func head(s []string) string {
	if len(s) > 5 {
		s = s[:5]
	}
	return strings.Join(s, " ")
}
