package master

import (
	"cmp"
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
)

// forwardedKey marks a call a follower forwarded to the leader, so that a
// stale view of the leader never makes calls loop between masters.
const forwardedKey = "cairn-forwarded-by"

// grpcService implements pb.MasterServer.
type grpcService struct {
	pb.UnimplementedMasterServer
	m *Master
}

var _ pb.MasterServer = (*grpcService)(nil)

func (g *grpcService) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	start := time.Now()
	resp, err := g.m.heartbeat(ctx, req)
	g.m.metrics.request("heartbeat", grpcCode(err), start)
	return resp, grpcError(err)
}

func (g *grpcService) Assign(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error) {
	start := time.Now()
	var resp *pb.AssignResponse
	err := g.m.leaderOrForward(ctx, func(ctx context.Context) (err error) {
		resp, err = g.m.assign(ctx, req)
		return err
	}, func(ctx context.Context, c pb.MasterClient) (err error) {
		resp, err = c.Assign(ctx, req)
		return err
	})
	g.m.metrics.request("assign", grpcCode(err), start)
	return resp, grpcError(err)
}

func (g *grpcService) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	start := time.Now()
	var resp *pb.LookupResponse
	err := g.m.leaderOrForward(ctx, func(context.Context) (err error) {
		resp, err = g.m.lookup(req.GetVolumeId())
		return err
	}, func(ctx context.Context, c pb.MasterClient) (err error) {
		resp, err = c.Lookup(ctx, req)
		return err
	})
	g.m.metrics.request("lookup", grpcCode(err), start)
	return resp, grpcError(err)
}

func (g *grpcService) ClusterStatus(context.Context, *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	start := time.Now()
	resp := g.m.clusterStatus()
	g.m.metrics.request("status", "OK", start)
	return resp, nil
}

func (g *grpcService) UpdateReplicas(ctx context.Context, req *pb.UpdateReplicasRequest) (*pb.UpdateReplicasResponse, error) {
	start := time.Now()
	var resp *pb.UpdateReplicasResponse
	err := g.m.leaderOrForward(ctx, func(ctx context.Context) (err error) {
		resp, err = g.m.updateReplicas(ctx, req)
		return err
	}, func(ctx context.Context, c pb.MasterClient) (err error) {
		resp, err = c.UpdateReplicas(ctx, req)
		return err
	})
	g.m.metrics.request("update_replicas", grpcCode(err), start)
	return resp, grpcError(err)
}

func (g *grpcService) SetDraining(ctx context.Context, req *pb.SetDrainingRequest) (*pb.SetDrainingResponse, error) {
	start := time.Now()
	err := g.m.leaderOrForward(ctx, func(ctx context.Context) error {
		return g.m.setDraining(ctx, req.GetUrl(), req.GetDraining())
	}, func(ctx context.Context, c pb.MasterClient) error {
		_, err := c.SetDraining(ctx, req)
		return err
	})
	g.m.metrics.request("set_draining", grpcCode(err), start)
	if err != nil {
		return nil, grpcError(err)
	}
	return &pb.SetDrainingResponse{}, nil
}

func grpcCode(err error) string {
	return status.Code(grpcError(err)).String()
}

// leaderOrForward runs local on the leader and forward against the leader's
// gRPC service on a follower.
func (m *Master) leaderOrForward(ctx context.Context, local func(context.Context) error, forward func(context.Context, pb.MasterClient) error) error {
	if _, _, ok := m.leaderEpoch(); ok {
		return local(ctx)
	}
	node := m.node.Load()
	if node == nil {
		return status.Error(codes.Unavailable, "master is shutting down; retry on another master")
	}
	leader := node.LeaderHTTP()
	if leader == "" || leader == m.addr {
		return status.Error(codes.Unavailable, ErrNoLeader.Error())
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return status.Errorf(codes.Unavailable, "master %s is not the leader either (leader changing); retry in a few seconds", m.addr)
	}
	conn, err := m.pool.Conn(leader)
	if err != nil {
		return status.Errorf(codes.Unavailable, "cannot reach master leader %s: %v; retry", leader, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, m.addr)
	err = forward(ctx, pb.NewMasterClient(conn))
	if err != nil && status.Code(err) == codes.Unknown {
		err = status.Errorf(codes.Unavailable, "forwarding to master leader %s failed: %v; retry", leader, err)
	}
	return err
}

// heartbeat registers a volume server (through Raft when it is new or
// changed), records its liveness and volumes, and tells it what the master
// knows about its volumes. A follower only names the leader.
//
// Volume servers are expected to send one heartbeat per pulse to the leader
// (following resp.Leader when is_leader is false, trying the next master on
// errors), each carrying the full list of their volumes, and one more right
// after AllocateVolume so a new volume turns writable without waiting a
// pulse. A server missing three pulses is dead; a volume is writable only
// while every replica reports it in_sync and not read_only.
func (m *Master) heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if err := validAddr("volume server url", req.GetUrl()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "heartbeat: %v; start the volume server with an ip:port address", err)
	}
	if _, _, ok := m.leaderEpoch(); !ok {
		leader := ""
		if node := m.node.Load(); node != nil {
			leader = node.LeaderHTTP()
		}
		return &pb.HeartbeatResponse{Leader: leader}, nil
	}
	rec := ServerRecord{
		URL: req.GetUrl(), PublicURL: req.GetPublicUrl(), GRPCPort: req.GetGrpcPort(),
		DC: req.GetDc(), Rack: req.GetRack(), MaxVolumes: req.GetMaxVolumes(),
	}
	if rec.PublicURL == "" {
		rec.PublicURL = rec.URL
	}
	if rec.GRPCPort == 0 {
		if a, err := rpc.GRPCAddr(rec.URL); err == nil {
			if _, p, err := net.SplitHostPort(a); err == nil {
				n, _ := strconv.Atoi(p)
				rec.GRPCPort = uint32(n)
			}
		}
	}
	var known ServerRecord
	var exists bool
	m.fsm.view(func(s *state) { known, exists = s.Servers[rec.URL] })
	rec.Draining = known.Draining // set by the operator, not by the server
	if !exists || known != rec {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.apply(actx, registerServerCmd(rec))
		cancel()
		if err != nil {
			return nil, err
		}
		if !exists {
			m.log.Info("volume server joined", "server", rec.URL, "dc", rec.DC, "rack", rec.Rack, "max_volumes", rec.MaxVolumes)
		} else {
			m.log.Info("volume server changed its settings", "server", rec.URL, "dc", rec.DC, "rack", rec.Rack, "max_volumes", rec.MaxVolumes)
		}
	}
	now := time.Now()
	m.live.record(req, now)

	view := m.live.snapshot(now)
	resp := &pb.HeartbeatResponse{Leader: m.addr, IsLeader: true, VolumeSizeLimit: m.cfg.VolumeSizeLimit}
	m.fsm.view(func(s *state) {
		for _, v := range s.Volumes {
			if !slices.Contains(v.Replicas, rec.URL) {
				continue
			}
			ok, _, _, _ := view.volumeHealth(v, m.cfg.VolumeSizeLimit)
			resp.Volumes = append(resp.Volumes, &pb.VolumeLocation{
				VolumeId: v.ID, Primary: v.Primary, Replicas: slices.Clone(v.Replicas), Writable: ok,
			})
		}
	})
	slices.SortFunc(resp.Volumes, func(a, b *pb.VolumeLocation) int { return cmp.Compare(a.VolumeId, b.VolumeId) })
	return resp, nil
}
