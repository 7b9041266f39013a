package master

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestClusterTLS runs masters and a volume server with mutual TLS on every
// hop: Raft, heartbeats, allocation, HTTP and gRPC forwarding.
func TestClusterTLS(t *testing.T) {
	peers := pickPeers(t, 3)
	volIP := testutil.LoopbackIP(t, testVolumePort, testVolumePort+10000)
	var ips []string
	for _, p := range peers {
		h, _, _ := net.SplitHostPort(p)
		ips = append(ips, h)
	}
	sec := testutil.Security(t, "cairn", append(ips, volIP))
	ms := runMasters(t, peers, func(c *Config) { c.Security = sec })
	leader := waitLeader(t, ms)
	startVolumeOn(t, volIP, peers, "", "", sec)

	follower := peers[0]
	if follower == leader.m.Addr() {
		follower = peers[1]
	}
	client := httpx.Client(sec, 20*time.Second)
	var a AssignJSON
	testutil.WaitFor(t, 20*time.Second, "assign over TLS via a follower", func() error {
		_, err := httpGetWith(client, "https://"+follower+"/dir/assign", &a)
		return err
	})
	id, err := fid.Parse(a.Fid)
	if err != nil {
		t.Fatal(err)
	}
	var lk LookupJSON
	if _, err := httpGetWith(client, "https://"+follower+"/dir/lookup?volumeId="+a.Fid, &lk); err != nil || len(lk.Locations) != 1 {
		t.Fatalf("lookup over TLS: %+v %v", lk, err)
	}
	// Plain HTTP is refused.
	if code, _ := httpGet("http://"+follower+"/dir/lookup?volumeId=1", nil); code == http.StatusOK {
		t.Fatal("plaintext request served")
	}

	pool := rpc.NewPool(sec)
	defer pool.Close()
	conn, err := pool.Conn(follower)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := pb.NewMasterClient(conn)
	if lr, err := c.Lookup(ctx, &pb.LookupRequest{VolumeId: id.Volume}); err != nil || len(lr.Locations) != 1 {
		t.Fatalf("gRPC lookup over TLS: %v %v", lr, err)
	}
	_, err = c.Lookup(ctx, &pb.LookupRequest{VolumeId: 4242})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown volume over gRPC: %v", err)
	}
}
