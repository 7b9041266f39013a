package master

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// VolumeServerStatus lets the master check that a fake server holds a copy.
func (v *fakeVolume) VolumeServerStatus(context.Context, *pb.VolumeServerStatusRequest) (*pb.VolumeServerStatusResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	resp := &pb.VolumeServerStatusResponse{FreeBytes: 1 << 30}
	for _, vi := range v.vols {
		resp.Volumes = append(resp.Volumes, vi)
	}
	return resp, nil
}

// TestUpdateReplicas exercises the rules of UpdateReplicas and SetDraining
// against a real master and fake volume servers.
func TestUpdateReplicas(t *testing.T) {
	ms := startMasters(t, 1, 1<<20)
	leader := waitLeader(t, ms)
	addrs := []string{leader.m.Addr()}
	vols := []*fakeVolume{startVolume(t, addrs, "dc1", "r1"), startVolume(t, addrs, "dc1", "r1"), startVolume(t, addrs, "dc1", "r1")}
	a := assignHTTP(t, addrs[0], "replication=001")
	id, _ := fid.Parse(a.Fid)
	vid := id.Volume
	vol, _ := volumeStatus(statusOf(t, addrs[0]), vid)
	var other *fakeVolume
	for _, v := range vols {
		if !slices.Contains(vol.Replicas, v.url) {
			other = v
		}
	}
	pool := rpc.NewPool(nil)
	defer pool.Close()
	conn, err := pool.Conn(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	mc := pb.NewMasterClient(conn)
	ctx := context.Background()
	update := func(req *pb.UpdateReplicasRequest) (*pb.UpdateReplicasResponse, error) {
		req.VolumeId = vid
		return mc.UpdateReplicas(ctx, req)
	}
	wantRefused := func(what string, code codes.Code, msg string, err error) {
		t.Helper()
		if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
			t.Fatalf("%s: %v, want %v with %q", what, err, code, msg)
		}
	}

	_, err = update(&pb.UpdateReplicasRequest{})
	wantRefused("nothing to change", codes.InvalidArgument, "nothing to add or remove", err)
	_, err = mc.UpdateReplicas(ctx, &pb.UpdateReplicasRequest{VolumeId: 999, Add: []string{other.url}})
	wantRefused("unknown volume", codes.NotFound, "not found", err)
	_, err = update(&pb.UpdateReplicasRequest{Add: []string{other.url}})
	wantRefused("server without a copy", codes.FailedPrecondition, "does not hold a copy", err)

	// A copy arrives, not yet in sync.
	other.set(func(v *fakeVolume) {
		v.vols[vid] = &pb.VolumeInfo{Id: vid, Replication: "001", Size: 8}
	})
	_, err = update(&pb.UpdateReplicasRequest{Add: []string{other.url}, Expect: []string{other.url}})
	wantRefused("stale plan", codes.FailedPrecondition, "changed meanwhile", err)
	if st, _ := volumeStatus(statusOf(t, addrs[0]), vid); !slices.Equal(st.Replicas, vol.Replicas) {
		t.Fatalf("refused changes changed the replicas: %v", st.Replicas)
	}
	resp, err := update(&pb.UpdateReplicasRequest{Add: []string{other.url}, Expect: vol.Replicas})
	if err != nil || len(resp.Replicas) != 3 || resp.Primary != vol.Primary {
		t.Fatalf("add: %v %v", resp, err)
	}
	full := resp.Replicas

	// Removing a live replica waits for every remaining one to be in sync
	// with the current set.
	_, err = update(&pb.UpdateReplicasRequest{Remove: []string{vol.Primary}, Expect: full})
	wantRefused("remove while the new copy catches up", codes.FailedPrecondition, "not alive and in sync", err)
	for _, v := range vols {
		v.set(func(v *fakeVolume) { v.vols[vid].InSync, v.vols[vid].Replicas = true, slices.Clone(full) })
	}
	testutil.WaitFor(t, 20*time.Second, "the primary to be removed", func() error {
		resp, err = update(&pb.UpdateReplicasRequest{Remove: []string{vol.Primary}, Expect: full})
		return err
	})
	if len(resp.Replicas) != 2 || slices.Contains(resp.Replicas, vol.Primary) || !slices.Contains(resp.Replicas, resp.Primary) {
		t.Fatalf("after removing the primary %s: %+v", vol.Primary, resp)
	}

	// A draining server is refused as a new replica and shown in the status.
	if _, err := mc.SetDraining(ctx, &pb.SetDrainingRequest{Url: vol.Primary, Draining: true}); err != nil {
		t.Fatal(err)
	}
	_, err = update(&pb.UpdateReplicasRequest{Add: []string{vol.Primary}})
	wantRefused("draining target", codes.FailedPrecondition, "being evacuated", err)
	drained := false
	for _, s := range statusOf(t, addrs[0]).Servers {
		drained = drained || (s.URL == vol.Primary && s.Draining)
	}
	if !drained {
		t.Fatalf("status does not show %s draining", vol.Primary)
	}
	// Heartbeats from the server (which know nothing of draining) keep it.
	beatAt := func() (int64, bool) {
		st, err := mc.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Servers {
			if s.Url == vol.Primary {
				return s.LastHeartbeatUnixMs, s.Draining
			}
		}
		t.Fatalf("%s not in the status", vol.Primary)
		return 0, false
	}
	marked, _ := beatAt()
	testutil.WaitFor(t, 20*time.Second, "two more heartbeats", func() error {
		if at, _ := beatAt(); at < marked+2*testPulse.Milliseconds() {
			return fmt.Errorf("last heartbeat at %d, marked at %d", at, marked)
		}
		return nil
	})
	if _, draining := beatAt(); !draining {
		t.Fatal("a heartbeat cleared the draining mark")
	}
	_, err = mc.SetDraining(ctx, &pb.SetDrainingRequest{Url: "127.0.0.1:1", Draining: true})
	wantRefused("unknown server", codes.NotFound, "not registered", err)
}
