package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/cairn-storage/cairn/filer"
)

func init() {
	register(&Command{
		Name:        "snapshot.delete",
		Summary:     "delete a snapshot, releasing the data only it references",
		Usage:       "ID",
		Destructive: true,
		Help: `Deletes snapshot ID (see snapshot.list) and its references to needles;
needles no longer referenced by anything are queued for deletion.`,
		New: func(*flag.FlagSet) Runner { return snapshotDelete{} },
	})
}

type snapshotDelete struct{}

func (snapshotDelete) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("snapshot.delete", args, 1, 1, "one snapshot ID"); err != nil {
		return err
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("%w: snapshot.delete: %q is not a snapshot id; see snapshot.list", errUsage, args[0])
	}
	snaps, err := listSnapshots(ctx, env)
	if err != nil {
		return fmt.Errorf("snapshot.delete %d: %s", id, rpcMessage(err))
	}
	var snap *filer.SnapshotInfo
	for i := range snaps {
		if snaps[i].ID == id {
			snap = &snaps[i]
		}
	}
	if snap == nil {
		return fmt.Errorf("snapshot.delete %d: no such snapshot; see snapshot.list", id)
	}
	if err := env.Confirm(fmt.Sprintf("delete snapshot %d (%s)", id, snap.Name)); err != nil {
		return fmt.Errorf("snapshot.delete %d: %w", id, err)
	}
	fc, err := env.Filer()
	if err != nil {
		return err
	}
	if _, err := fc.Apply(ctx, &filer.DeleteSnapshot{ID: id}); err != nil {
		return fsError("snapshot.delete", strconv.FormatUint(id, 10), err)
	}
	return env.Emit(snap, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "deleted snapshot %d (%s)\n", id, snap.Name)
		return err
	})
}
