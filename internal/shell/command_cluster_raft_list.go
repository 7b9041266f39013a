package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:    "cluster.raft.list",
		Summary: "members of the masters' or filers' Raft group: suffrage, role, term, indexes",
		Usage:   "[-group master|filer]",
		Help: `Lists the latest configuration of the Raft group (masters by default,
filers with -group filer) and asks every member for its own state: role,
term, commit, applied and last log index, and how long ago a follower last
heard from the leader. A member that does not answer is listed as
unreachable. Servers given with --master or --filer that answer but are not
in the configuration (for example one just removed) are listed as not
members. Fails when no member answers or the group has no leader.`,
		New: func(fs *flag.FlagSet) Runner {
			r := &raftList{}
			fs.StringVar(&r.group, "group", "master", "the Raft group: master or filer")
			return r
		},
	})
}

type raftList struct{ group string }

// RaftServerJSON is one server in cluster.raft.list.
type RaftServerJSON struct {
	ID            string `json:"id"`
	Address       string `json:"address"`
	Suffrage      string `json:"suffrage"` // Voter, Nonvoter, Staging; "" when not a member
	Member        bool   `json:"member"`
	Reachable     bool   `json:"reachable"`
	Error         string `json:"error,omitempty"`
	State         string `json:"state,omitempty"` // Leader, Follower, Candidate, Shutdown
	IsLeader      bool   `json:"is_leader"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastLogIndex  uint64 `json:"last_log_index"`
	LastContactMs int64  `json:"last_contact_ms"` // -1: never; 0 on the leader
}

// RaftListJSON is the JSON output of cluster.raft.list.
type RaftListJSON struct {
	Group              string           `json:"group"`
	Leader             string           `json:"leader"`
	ConfigurationIndex uint64           `json:"configuration_index"`
	Servers            []RaftServerJSON `json:"servers"`
}

func (r *raftList) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("cluster.raft.list", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	addrs, err := raftGroupAddrs(env, "cluster.raft.list", r.group)
	if err != nil {
		return err
	}
	members := map[string]*pb.RaftMemberResponse{}
	errs := map[string]error{}
	ask := func(addr string) {
		if _, done := members[addr]; done {
			return
		}
		if _, done := errs[addr]; done {
			return
		}
		m, err := raftMember(ctx, env, addr)
		if err != nil {
			errs[addr] = err
			return
		}
		members[addr] = m
	}
	for _, a := range addrs {
		ask(a)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The configuration of the leader if one answered, else of the member
	// with the newest configuration.
	var conf *pb.RaftMemberResponse
	for _, a := range addrs {
		m := members[a]
		if m == nil {
			continue
		}
		if m.State == "Leader" {
			conf = m
			break
		}
		if conf == nil || m.ConfigurationIndex > conf.ConfigurationIndex {
			conf = m
		}
	}
	if conf == nil {
		var msgs []string
		for _, a := range addrs {
			msgs = append(msgs, a+": "+rpcMessage(errs[a]))
		}
		return fmt.Errorf("cluster.raft.list: no %s answered (%s); check --%s and that they are running", r.group, strings.Join(msgs, "; "), r.group)
	}
	if conf.State != "Leader" && conf.Leader != "" {
		ask(conf.Leader)
		if m := members[conf.Leader]; m != nil && m.State == "Leader" {
			conf = m
		}
	}
	out := RaftListJSON{Group: r.group, ConfigurationIndex: conf.ConfigurationIndex, Servers: []RaftServerJSON{}}
	if conf.State == "Leader" {
		out.Leader = conf.Id
	}
	seen := map[string]bool{}
	for _, s := range conf.Servers {
		seen[s.Id] = true
		ask(s.Id)
		out.Servers = append(out.Servers, raftServerRow(s.Id, s.Address, s.Suffrage, true, members[s.Id], errs[s.Id]))
	}
	for _, a := range addrs {
		if m := members[a]; m != nil && !seen[m.Id] {
			seen[m.Id] = true
			out.Servers = append(out.Servers, raftServerRow(m.Id, "", "", false, m, nil))
		}
	}
	if err := env.Emit(out, func(w io.Writer) error { return printRaftList(w, &out) }); err != nil {
		return err
	}
	if out.Leader == "" {
		return fmt.Errorf("cluster.raft.list: the %s group has no leader; check that a majority of its voters is running and can reach each other", r.group)
	}
	return nil
}

func raftServerRow(id, addr, suffrage string, member bool, m *pb.RaftMemberResponse, err error) RaftServerJSON {
	row := RaftServerJSON{ID: id, Address: addr, Suffrage: suffrage, Member: member, LastContactMs: -1}
	if m == nil {
		row.Error = "unreachable"
		if err != nil {
			row.Error = rpcMessage(err)
		}
		return row
	}
	row.Reachable, row.State, row.IsLeader = true, m.State, m.State == "Leader"
	row.Term, row.CommitIndex, row.AppliedIndex, row.LastLogIndex = m.Term, m.CommitIndex, m.AppliedIndex, m.LastLogIndex
	row.LastContactMs = m.LastContactMs
	return row
}

func printRaftList(w io.Writer, l *RaftListJSON) error {
	fmt.Fprintf(w, "%s group: leader %s, configuration at index %d\n", l.Group, orDash(l.Leader), l.ConfigurationIndex)
	tw := newTable(w)
	fmt.Fprintf(tw, "  ID\tRAFT ADDRESS\tSUFFRAGE\tROLE\tTERM\tCOMMIT\tAPPLIED\tLAST LOG\tLAST CONTACT\n")
	for _, s := range l.Servers {
		suffrage := strings.ToLower(s.Suffrage)
		if !s.Member {
			suffrage = "not a member"
		}
		if !s.Reachable {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tunreachable\t-\t-\t-\t-\t(%s)\n", s.ID, orDash(s.Address), suffrage, s.Error)
			continue
		}
		contact := "-"
		switch {
		case s.IsLeader:
		case s.LastContactMs < 0:
			contact = "never"
		default:
			contact = fmt.Sprintf("%dms ago", s.LastContactMs)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", s.ID, orDash(s.Address), suffrage,
			strings.ToLower(s.State), s.Term, s.CommitIndex, s.AppliedIndex, s.LastLogIndex, contact)
	}
	return tw.Flush()
}

// raftGroupAddrs returns the HTTP addresses the shell knows for group.
func raftGroupAddrs(env *Env, cmd, group string) ([]string, error) {
	switch group {
	case "master":
		if len(env.Masters) == 0 {
			return nil, fmt.Errorf("%s: no master configured; start the shell with --master host:9333", cmd)
		}
		return env.Masters, nil
	case "filer":
		if len(env.Filers) == 0 {
			return nil, fmt.Errorf("%s: no filer configured; start the shell with --filer host:8888", cmd)
		}
		return env.Filers, nil
	}
	return nil, fmt.Errorf("%w: %s: -group %q: want master or filer", errUsage, cmd, group)
}

// raftMember asks the member at addr for its own state.
func raftMember(ctx context.Context, env *Env, addr string) (*pb.RaftMemberResponse, error) {
	conn, err := env.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return pb.NewRaftAdminClient(conn).RaftMember(ctx, &pb.RaftMemberRequest{})
}

// raftConfig returns the configuration as the group's leader reports it,
// found through any member of addrs.
func raftConfig(ctx context.Context, env *Env, group string, addrs []string) (*pb.RaftMemberResponse, error) {
	var msgs []string
	queue := slices.Clone(addrs)
	tried := map[string]bool{}
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		if tried[a] {
			continue
		}
		tried[a] = true
		m, err := raftMember(ctx, env, a)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			msgs = append(msgs, a+": "+rpcMessage(err))
			continue
		}
		if m.State == "Leader" {
			return m, nil
		}
		if m.Leader != "" {
			queue = append([]string{m.Leader}, queue...)
		} else {
			msgs = append(msgs, a+": knows no leader")
		}
	}
	return nil, fmt.Errorf("no %s leader found (%s); check that a majority of the %ss is running and reachable", group, strings.Join(msgs, "; "), group)
}

// raftChange runs a membership change against the group's leader (through
// any member that answers; followers forward) and returns the response.
func raftChange(ctx context.Context, env *Env, group string, addrs []string, call func(context.Context, pb.RaftAdminClient) (*pb.RaftChangeResponse, error)) (*pb.RaftChangeResponse, error) {
	targets := slices.Clone(addrs)
	if m, err := raftConfig(ctx, env, group, addrs); err == nil {
		targets = append([]string{m.Id}, targets...)
	}
	var last error
	for _, a := range targets {
		conn, err := env.pool.Conn(a)
		if err != nil {
			last = err
			continue
		}
		resp, err := call(ctx, pb.NewRaftAdminClient(conn))
		if err == nil {
			return resp, nil
		}
		last = err
		if ctx.Err() != nil || status.Code(err) != codes.Unavailable {
			return nil, err
		}
	}
	if last == nil {
		last = errors.New("no member to ask")
	}
	return nil, last
}

// suffrageOf returns the suffrage of id in servers, "" if absent.
func suffrageOf(servers []*pb.RaftServerInfo, id string) string {
	for _, s := range servers {
		if s.Id == id {
			return s.Suffrage
		}
	}
	return ""
}

func serverIDs(servers []*pb.RaftServerInfo) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Id+" ("+strings.ToLower(s.Suffrage)+")")
	}
	return out
}
