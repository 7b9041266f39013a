package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:        "cluster.raft.remove",
		Summary:     "remove a server from the masters' or filers' Raft group",
		Usage:       "[-group master|filer] ID",
		Destructive: true,
		Help: `Removes the server with HTTP address ID from the group's configuration.
The leader refuses to remove the last voter, and refuses a removal after
which fewer of the remaining voters answer than a majority of them (the
group could no longer elect a leader or commit). Removing the leader makes
it step down. The removed server keeps running outside the group; add it
back with cluster.raft.add, or stop it.`,
		New: func(fs *flag.FlagSet) Runner {
			r := &raftRemove{}
			fs.StringVar(&r.group, "group", "master", "the Raft group: master or filer")
			return r
		},
	})
}

type raftRemove struct{ group string }

func (r *raftRemove) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("cluster.raft.remove", args, 1, 1, "one server ID"); err != nil {
		return err
	}
	id := args[0]
	addrs, err := raftGroupAddrs(env, "cluster.raft.remove", r.group)
	if err != nil {
		return err
	}
	conf, err := raftConfig(ctx, env, r.group, addrs)
	if err != nil {
		return fmt.Errorf("cluster.raft.remove %s: %w; nothing was changed", id, err)
	}
	if suffrageOf(conf.Servers, id) == "" {
		return fmt.Errorf("cluster.raft.remove %s: not a member of the %s group (members: %s); nothing was changed",
			id, r.group, strings.Join(serverIDs(conf.Servers), ", "))
	}
	what := fmt.Sprintf("remove %s %s from the %s Raft group", r.group, id, r.group)
	if id == conf.Id {
		what += " (it is the leader; it will step down)"
	}
	if err := env.Confirm(what); err != nil {
		return fmt.Errorf("cluster.raft.remove %s: %w", id, err)
	}
	resp, err := raftChange(ctx, env, r.group, addrs, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftRemoveServer(ctx, &pb.RaftRemoveServerRequest{Id: id})
	})
	if err != nil {
		return fmt.Errorf("cluster.raft.remove %s: %s", id, rpcMessage(err))
	}
	out := changeJSON(r.group, id, resp)
	return env.Emit(out, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "removed %s %s from the %s group; it now has %s\n",
			r.group, id, r.group, strings.Join(serverIDs(resp.Servers), ", "))
		return err
	})
}
