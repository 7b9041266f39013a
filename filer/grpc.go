package filer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/raftutil"
)

// forwardedKey marks a call a filer forwarded to its leader, so it is never
// forwarded twice.
const forwardedKey = "cairn-filer-forwarded"

// grpcService implements pb.FilerServer.
type grpcService struct {
	pb.UnimplementedFilerServer
	s *Server
}

func forwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

// leaderClient returns a client for the leader, or an Unavailable error.
func (s *Server) leaderClient(ctx context.Context) (pb.FilerClient, context.Context, error) {
	if forwarded(ctx) {
		return nil, nil, status.Error(codes.Unavailable, "filer: leadership changed while forwarding; retry")
	}
	leader := s.node.LeaderHTTP()
	if leader == "" {
		return nil, nil, status.Error(codes.Unavailable, "filer: no leader elected yet; retry in a few seconds")
	}
	conn, err := s.pool.Conn(leader)
	if err != nil {
		return nil, nil, status.Error(codes.Unavailable, err.Error())
	}
	return pb.NewFilerClient(conn), metadata.AppendToOutgoingContext(ctx, forwardedKey, s.url), nil
}

func (g *grpcService) Apply(ctx context.Context, req *pb.FilerApplyRequest) (*pb.FilerApplyResponse, error) {
	s := g.s
	if !s.node.IsLeader() {
		c, fctx, err := s.leaderClient(ctx)
		if err != nil {
			return nil, err
		}
		return c.Apply(fctx, req)
	}
	cmd, err := DecodeCommand(req.Command)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	start := time.Now()
	res, index, err := s.apply(ctx, cmd)
	s.met.observeOp(cmd.Op.OpType(), res, err, time.Since(start))
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.FilerApplyResponse{Result: b, Index: index}, nil
}

// applyOp proposes op on the leader and returns a refusal (non-zero
// errno) as a syscall.Errno error, the way the filer's own workers and its
// HTTP API want it.
func (s *Server) applyOp(ctx context.Context, op Op) (*Result, error) {
	res, _, err := s.apply(ctx, &Command{Op: op})
	if err != nil {
		return nil, err
	}
	if res.Errno != 0 {
		return res, res.Errno
	}
	return res, nil
}

// apply proposes cmd on the leader, stamping the time if the client left it
// out, and returns the state machine's result.
func (s *Server) apply(ctx context.Context, cmd *Command) (*Result, uint64, error) {
	if cmd.Time == 0 {
		cmd.Time = time.Now().UnixNano()
	}
	b, err := cmd.Encode()
	if err != nil {
		return nil, 0, status.Error(codes.InvalidArgument, err.Error())
	}
	defer s.fsm.Proposal(b, cmd)()
	resp, err := s.node.Apply(ctx, b)
	if err != nil {
		if errors.Is(err, raftutil.ErrNotLeader) {
			return nil, 0, status.Error(codes.Unavailable, "filer: lost leadership while applying; retry")
		}
		if errors.Is(err, ErrBadCommand) {
			return nil, 0, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, 0, status.Error(codes.Unavailable, fmt.Sprintf("filer: command not committed: %v; retry", err))
	}
	res, ok := resp.(*Result)
	if !ok {
		return nil, 0, status.Errorf(codes.Internal, "filer: unexpected apply response %T", resp)
	}
	return res, s.fsm.State().ApplyIndex(), nil
}

func (g *grpcService) Read(ctx context.Context, req *pb.FilerReadRequest) (resp *pb.FilerReadResponse, err error) {
	s := g.s
	defer func(start time.Time) { s.met.observeRead(req.Op, resp, err, start) }(time.Now())
	if !req.StaleOk {
		if !s.node.IsLeader() {
			c, fctx, err := s.leaderClient(ctx)
			if err != nil {
				return nil, err
			}
			return c.Read(fctx, req)
		}
		if err := s.ensureLeaderCurrent(ctx); err != nil {
			return nil, status.Error(codes.Unavailable, "filer: leader not ready: "+err.Error())
		}
		if err := s.node.VerifyLeader(); err != nil {
			return nil, status.Error(codes.Unavailable, "filer: lost leadership; retry")
		}
	}
	v, err := s.read(req)
	resp = &pb.FilerReadResponse{}
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Errno = int32(errno)
		resp.Error = err.Error()
		return resp, nil
	}
	resp.Json, err = json.Marshal(v)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return resp, nil
}

// read dispatches one read operation on this member's state.
func (s *Server) read(req *pb.FilerReadRequest) (any, error) {
	st := s.fsm.State()
	switch req.Op {
	case "getattr":
		return st.GetAttr(req.Ino)
	case "attr":
		return st.Attr(req.Ino)
	case "lookup":
		return st.Lookup(req.Parent, req.Name)
	case "lookup_attr":
		return st.LookupAttr(req.Parent, req.Name)
	case "readdir":
		limit := int(req.Limit)
		if limit <= 0 || limit > 10000 {
			limit = 1000
		}
		return st.ReadDir(req.Ino, req.After, limit)
	case "readlink":
		return st.Readlink(req.Ino)
	case "getxattr":
		return st.GetXattr(req.Ino, req.Name)
	case "listxattr":
		return st.ListXattr(req.Ino)
	case "statfs":
		return st.Statfs(req.Ino)
	case "resolve":
		return st.Resolve(req.Path)
	case "snapshots":
		return st.ListSnapshots()
	case "pending_deletes":
		limit := int(req.Limit)
		if limit <= 0 {
			limit = 1000
		}
		return st.PendingDeletes(limit)
	case "orphans":
		return st.Orphans()
	case "referenced":
		return st.Referenced()
	case "uploads":
		return st.ExpiredUploads(math.MaxInt64)
	case "leases":
		return st.Uploads()
	case "check":
		return st.CheckReport()
	case "inline":
		if req.Length > MaxInlineBytes {
			return nil, fmt.Errorf("filer: inline read of %d bytes, at most %d: %w", req.Length, MaxInlineBytes, syscall.EINVAL)
		}
		return st.ReadInline(req.Name, req.Offset, req.Length)
	}
	return nil, fmt.Errorf("filer: unknown read operation %q: %w", req.Op, syscall.EINVAL)
}

func (g *grpcService) Subscribe(req *pb.SubscribeRequest, stream pb.Filer_SubscribeServer) error {
	ch, cancel := g.s.hub.subscribe(req.RootIno, g.s.fsm.State(), req.SkipDataCommitsOf)
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "filer: event stream ended (server stopping or subscriber too slow); resubscribe and revalidate caches")
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

func (g *grpcService) AssignVolume(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error) {
	return g.s.assign(ctx, req)
}

func (g *grpcService) LookupVolume(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	return g.s.lookupVolume(ctx, req.VolumeId)
}

func (g *grpcService) FilerStatus(context.Context, *pb.FilerStatusRequest) (*pb.FilerStatusResponse, error) {
	s := g.s
	st := s.node.Stats()
	resp := &pb.FilerStatusResponse{Leader: s.node.LeaderHTTP(), IsLeader: s.node.IsLeader(), Term: s.node.Term()}
	resp.CommitIndex = parseUint(st["commit_index"])
	resp.AppliedIndex = parseUint(st["applied_index"])
	peers, _ := s.node.Peers()
	for _, p := range peers {
		resp.Peers = append(resp.Peers, &pb.PeerStatus{Id: p.ID, Address: p.Address, Suffrage: p.Suffrage})
	}
	return resp, nil
}
