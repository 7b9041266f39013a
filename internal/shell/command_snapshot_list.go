package shell

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:    "snapshot.list",
		Summary: "list snapshots: id, name, source directory, time",
		Usage:   "",
		New:     func(*flag.FlagSet) Runner { return snapshotList{} },
	})
}

type snapshotList struct{}

func listSnapshots(ctx context.Context, env *Env) ([]filer.SnapshotInfo, error) {
	fc, err := env.Filer()
	if err != nil {
		return nil, err
	}
	out := []filer.SnapshotInfo{}
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "snapshots"}, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []filer.SnapshotInfo{}
	}
	return out, nil
}

func (snapshotList) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("snapshot.list", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	snaps, err := listSnapshots(ctx, env)
	if err != nil {
		return fmt.Errorf("snapshot.list: %s", rpcMessage(err))
	}
	return env.Emit(snaps, func(w io.Writer) error {
		if len(snaps) == 0 {
			_, err := fmt.Fprintln(w, "no snapshots")
			return err
		}
		tw := newTable(w)
		fmt.Fprintf(tw, "ID\tNAME\tSOURCE INODE\tROOT INODE\tTAKEN\n")
		for _, s := range snaps {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", s.ID, s.Name, s.SrcIno, s.Root, formatTime(s.Time))
		}
		return tw.Flush()
	})
}
