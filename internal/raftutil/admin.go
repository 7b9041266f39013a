package raftutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
)

// Membership changes of a running group, served over gRPC as the RaftAdmin
// service (internal/pb/raftadmin.proto) by every master and every filer.
//
// Changes run on the leader; a follower forwards them once. Removing a
// server is checked first: the leader refuses to remove the last voter, and
// refuses a removal after which fewer voters than a quorum of the new
// configuration answer, since the group could then no longer elect a leader
// or commit anything.

// probeTimeout bounds asking one member for its state.
const probeTimeout = 3 * time.Second

// forwardKey marks a change a follower forwarded to its leader.
const forwardKey = "cairn-raftadmin-forwarded"

// MemberState is one member's own view of the group.
type MemberState struct {
	ID, State, Leader              string
	Term, Commit, Applied, LastLog uint64
	LastContact                    time.Duration // -1: never heard from a leader
	Servers                        []Peer
	ConfigIndex                    uint64
}

// Member returns this member's state and the latest configuration it knows.
func (n *Node) Member() (MemberState, error) {
	r := n.raft
	_, leader := r.LeaderWithID()
	ms := MemberState{
		ID: n.id, State: r.State().String(), Leader: string(leader),
		Term: r.CurrentTerm(), Commit: r.CommitIndex(), Applied: r.AppliedIndex(), LastLog: r.LastIndex(),
	}
	switch lc := r.LastContact(); {
	case r.State() == raft.Leader:
	case lc.IsZero():
		ms.LastContact = -1
	default:
		ms.LastContact = time.Since(lc)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return ms, fmt.Errorf("raftutil: read configuration: %w", err)
	}
	ms.ConfigIndex = f.Index()
	for _, s := range f.Configuration().Servers {
		ms.Servers = append(ms.Servers, Peer{ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String()})
	}
	return ms, nil
}

// AdminService implements pb.RaftAdminServer for one member. Group names the
// group in messages ("master", "filer"). Node returns the running member,
// nil while there is none. Pool reaches the other members' gRPC services.
type AdminService struct {
	pb.UnimplementedRaftAdminServer
	Group string
	Node  func() *Node
	Pool  *rpc.Pool
}

var _ pb.RaftAdminServer = (*AdminService)(nil)

func (a *AdminService) node() (*Node, error) {
	n := a.Node()
	if n == nil {
		return nil, status.Errorf(codes.Unavailable, "%s is not running Raft (starting or stopping); retry", a.Group)
	}
	return n, nil
}

// RaftMember answers with this member's own state.
func (a *AdminService) RaftMember(context.Context, *pb.RaftMemberRequest) (*pb.RaftMemberResponse, error) {
	n, err := a.node()
	if err != nil {
		return nil, err
	}
	ms, err := n.Member()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &pb.RaftMemberResponse{
		Id: ms.ID, State: ms.State, Leader: ms.Leader, Term: ms.Term,
		CommitIndex: ms.Commit, AppliedIndex: ms.Applied, LastLogIndex: ms.LastLog,
		LastContactMs: ms.LastContact.Milliseconds(), Servers: pbServers(ms.Servers), ConfigurationIndex: ms.ConfigIndex,
	}
	if ms.LastContact < 0 {
		resp.LastContactMs = -1
	}
	return resp, nil
}

// RaftAddVoter adds a voter, or makes an existing member a voter.
func (a *AdminService) RaftAddVoter(ctx context.Context, req *pb.RaftAddVoterRequest) (*pb.RaftChangeResponse, error) {
	if _, err := rpc.RaftAddr(req.GetId()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "add voter: id %q must be the member's HTTP address host:port: %v", req.GetId(), err)
	}
	if addr := req.GetAddress(); addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "add voter: raft address %q is not host:port", addr)
		}
	}
	return a.change(ctx, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftAddVoter(ctx, req)
	}, func(ctx context.Context, n *Node) error {
		return n.addVoter(ctx, req.GetId(), req.GetAddress())
	})
}

// RaftRemoveServer removes a member after checking that the group keeps a
// quorum without it.
func (a *AdminService) RaftRemoveServer(ctx context.Context, req *pb.RaftRemoveServerRequest) (*pb.RaftChangeResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "remove server: no id given")
	}
	return a.change(ctx, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftRemoveServer(ctx, req)
	}, func(ctx context.Context, n *Node) error {
		ms, err := n.Member()
		if err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		if err := a.checkRemove(ctx, n, ms, req.GetId()); err != nil {
			return err
		}
		return n.RemoveServer(ctx, req.GetId())
	})
}

// RaftTransferLeadership hands leadership to a voter (any when id is "").
func (a *AdminService) RaftTransferLeadership(ctx context.Context, req *pb.RaftTransferLeadershipRequest) (*pb.RaftChangeResponse, error) {
	return a.change(ctx, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftTransferLeadership(ctx, req)
	}, func(ctx context.Context, n *Node) error {
		if req.GetId() == n.id {
			return status.Errorf(codes.FailedPrecondition, "%s %s is already the leader", a.Group, n.id)
		}
		if err := n.TransferLeadership(req.GetId()); err != nil {
			return err
		}
		// The future ends when the target was asked to campaign; wait
		// (briefly) until this member sees another leader.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if l := n.LeaderHTTP(); l != "" && l != n.id {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
}

// change runs local on the leader, or forwards on a follower, and reports
// the configuration afterwards.
func (a *AdminService) change(ctx context.Context, forward func(context.Context, pb.RaftAdminClient) (*pb.RaftChangeResponse, error), local func(context.Context, *Node) error) (*pb.RaftChangeResponse, error) {
	n, err := a.node()
	if err != nil {
		return nil, err
	}
	if !n.IsLeader() {
		leader := n.LeaderHTTP()
		md, _ := metadata.FromIncomingContext(ctx)
		switch {
		case leader == "":
			return nil, status.Errorf(codes.Unavailable, "%s %s knows no leader (election under way or no quorum); retry in a few seconds", a.Group, n.id)
		case len(md.Get(forwardKey)) > 0 || leader == n.id:
			return nil, status.Errorf(codes.Unavailable, "%s %s is not the leader either (leadership changing); retry against %s", a.Group, n.id, leader)
		}
		conn, err := a.Pool.Conn(leader)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "cannot reach %s leader %s: %v", a.Group, leader, err)
		}
		return forward(metadata.AppendToOutgoingContext(ctx, forwardKey, n.id), pb.NewRaftAdminClient(conn))
	}
	if err := local(ctx, n); err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		code := codes.FailedPrecondition
		if errors.Is(err, ErrNotLeader) {
			code = codes.Unavailable
		}
		return nil, status.Error(code, err.Error())
	}
	ms, err := n.Member()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pb.RaftChangeResponse{Leader: ms.Leader, Servers: pbServers(ms.Servers), ConfigurationIndex: ms.ConfigIndex}, nil
}

// checkRemove refuses removals that would leave the group without a
// quorum: the last voter, or one after which fewer of the remaining voters
// answer than a majority of them.
func (a *AdminService) checkRemove(ctx context.Context, n *Node, ms MemberState, id string) error {
	var target *Peer
	var remaining []Peer
	for i, p := range ms.Servers {
		switch {
		case p.ID == id:
			target = &ms.Servers[i]
		case p.Suffrage == raft.Voter.String():
			remaining = append(remaining, p)
		}
	}
	if target == nil {
		return status.Errorf(codes.NotFound, "%s %s is not a member of the %s group (members: %s); nothing was changed",
			a.Group, id, a.Group, strings.Join(peerIDs(ms.Servers), ", "))
	}
	if target.Suffrage != raft.Voter.String() {
		return nil // a non-voter does not count for quorum
	}
	if len(remaining) == 0 {
		return status.Errorf(codes.FailedPrecondition, "refusing to remove %s: it is the last voter of the %s group, which would be left with no member; add another voter first", id, a.Group)
	}
	need := len(remaining)/2 + 1
	var up, down []string
	for _, p := range remaining {
		if p.ID == n.id || a.answers(ctx, p.ID, ms.Term) {
			up = append(up, p.ID)
		} else {
			down = append(down, p.ID)
		}
	}
	if len(up) < need {
		return status.Errorf(codes.FailedPrecondition,
			"refusing to remove %s: the %s group would keep %d voters of which only %d answer (%s not answering), and it needs %d to elect a leader and commit; bring those members back first, or remove one that is down",
			id, a.Group, len(remaining), len(up), strings.Join(down, ", "), need)
	}
	return nil
}

// answers reports whether member id responds and follows the leader of term.
func (a *AdminService) answers(ctx context.Context, id string, term uint64) bool {
	conn, err := a.Pool.Conn(id)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// WaitForReady: a member that just restarted is reached once the
	// connection's reconnect backoff ends, within the timeout.
	r, err := pb.NewRaftAdminClient(conn).RaftMember(ctx, &pb.RaftMemberRequest{}, grpc.WaitForReady(true))
	return err == nil && r.Term == term && slices.Contains([]string{"Follower", "Leader"}, r.State)
}

// addVoter adds id at addr (id's port + 20000 when addr is "").
func (n *Node) addVoter(ctx context.Context, id, addr string) error {
	if addr == "" {
		return n.AddVoter(ctx, id)
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftutil: add voter %s at %s: %w", id, addr, mapErr(err))
	}
	return nil
}

func pbServers(ps []Peer) []*pb.RaftServerInfo {
	out := make([]*pb.RaftServerInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, &pb.RaftServerInfo{Id: p.ID, Address: p.Address, Suffrage: p.Suffrage})
	}
	return out
}

func peerIDs(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}
