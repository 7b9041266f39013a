package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// The CSI plugin's layout in the filer namespace (see docs/csi.md and
// package csi): volume <id> is the quota root /csi/<id>, entries starting
// with "." are volumes being created or deleted, and CSI snapshot <s> of a
// volume is the filer snapshot "csi.<s>" of its directory.
const (
	csiVolumesDir   = "/csi"
	csiSnapshotPfx  = "csi."
	csiXattrRepl    = "trusted.cairn.csi.replication"
	csiXattrColl    = "trusted.cairn.csi.collection"
	csiXattrSource  = "trusted.cairn.csi.source"
	csiListMaxItems = 100000
)

func init() {
	register(&Command{
		Name:    "csi.volumes",
		Summary: "CSI volumes: capacity, usage, placement and snapshots",
		Usage:   "[ID]",
		Help: `Lists the volumes of the CSI plugin (the filer directories /csi/<id>), or
only volume ID: capacity (the quota's byte limit, 0 unlimited), bytes and
inodes used, replication and collection, the snapshot or volume it was
cloned from, and its CSI snapshots with the time they were taken.`,
		New: func(*flag.FlagSet) Runner { return csiVolumes{} },
	})
}

type csiVolumes struct{}

// CSISnapshotJSON is one CSI snapshot in csi.volumes.
type CSISnapshotJSON struct {
	ID       string    `json:"id"`
	FilerID  uint64    `json:"filer_snapshot_id"`
	TakenAt  time.Time `json:"taken_at"`
	RootIno  uint64    `json:"root_ino"`
	SourceID string    `json:"source_volume_id"`
}

// CSIVolumeJSON is one CSI volume in csi.volumes.
type CSIVolumeJSON struct {
	ID            string            `json:"id"`
	Path          string            `json:"path"`
	Ino           uint64            `json:"ino"`
	CapacityBytes uint64            `json:"capacity_bytes"` // 0: unlimited
	UsedBytes     uint64            `json:"used_bytes"`
	UsedInodes    uint64            `json:"used_inodes"`
	MaxInodes     uint64            `json:"max_inodes"`
	Replication   string            `json:"replication"`
	Collection    string            `json:"collection"`
	Source        string            `json:"source,omitempty"` // snapshot:<id> or volume:<id>
	Snapshots     []CSISnapshotJSON `json:"snapshots"`
}

func (csiVolumes) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("csi.volumes", args, 0, 1, "at most one volume ID"); err != nil {
		return err
	}
	fc, err := env.Filer()
	if err != nil {
		return err
	}
	out := []CSIVolumeJSON{}
	root, err := fc.Resolve(ctx, csiVolumesDir)
	switch {
	case errors.Is(err, syscall.ENOENT):
		if len(args) == 1 {
			return fmt.Errorf("csi.volumes %s: no such CSI volume (the plugin has created none: %s does not exist)", args[0], csiVolumesDir)
		}
		return env.Emit(out, func(w io.Writer) error { return printCSIVolumes(w, out) })
	case err != nil:
		return fsError("csi.volumes", csiVolumesDir, err)
	}
	var snaps []filer.SnapshotInfo
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "snapshots"}, &snaps); err != nil {
		return fmt.Errorf("csi.volumes: list snapshots: %s", rpcMessage(err))
	}
	err = eachEntry(ctx, fc, root.Ino, func(e filer.DirEntry) error {
		if strings.HasPrefix(e.Name, ".") || (len(args) == 1 && e.Name != args[0]) {
			return nil
		}
		if len(out) >= csiListMaxItems {
			return fmt.Errorf("more than %d volumes; name one", csiListMaxItems)
		}
		v, err := csiVolume(ctx, fc, e, snaps)
		if err != nil {
			return fmt.Errorf("volume %s: %w", e.Name, err)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return fsError("csi.volumes", csiVolumesDir, err)
	}
	if len(args) == 1 && len(out) == 0 {
		return fmt.Errorf("csi.volumes %s: no such CSI volume; csi.volumes lists them", args[0])
	}
	return env.Emit(out, func(w io.Writer) error { return printCSIVolumes(w, out) })
}

func csiVolume(ctx context.Context, fc *filer.Client, e filer.DirEntry, snaps []filer.SnapshotInfo) (CSIVolumeJSON, error) {
	v := CSIVolumeJSON{ID: e.Name, Path: joinPath(csiVolumesDir, e.Name), Ino: e.Ino, Snapshots: []CSISnapshotJSON{}}
	st, err := fc.Statfs(ctx, e.Ino)
	if err != nil {
		return v, err
	}
	if st.Root == e.Ino {
		v.CapacityBytes, v.MaxInodes = st.MaxBytes, st.MaxInodes
	}
	v.UsedBytes, v.UsedInodes = st.Bytes, st.Inodes
	for _, x := range []struct {
		name string
		dst  *string
	}{{csiXattrRepl, &v.Replication}, {csiXattrColl, &v.Collection}, {csiXattrSource, &v.Source}} {
		var b []byte
		err := fc.Read(ctx, &pb.FilerReadRequest{Op: "getxattr", Ino: e.Ino, Name: x.name}, &b)
		if err != nil && !errors.Is(err, syscall.ENODATA) {
			return v, err
		}
		*x.dst = string(b)
	}
	for _, s := range snaps {
		if s.SrcIno == e.Ino && strings.HasPrefix(s.Name, csiSnapshotPfx) {
			v.Snapshots = append(v.Snapshots, CSISnapshotJSON{
				ID: strings.TrimPrefix(s.Name, csiSnapshotPfx), FilerID: s.ID, TakenAt: time.Unix(0, s.Time).UTC(),
				RootIno: s.Root, SourceID: e.Name,
			})
		}
	}
	return v, nil
}

func printCSIVolumes(w io.Writer, vs []CSIVolumeJSON) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintf(w, "no CSI volumes\n")
		return err
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "ID\tCAPACITY\tUSED\tINODES\tREPL\tCOLLECTION\tSOURCE\tSNAPSHOTS\n")
	for _, v := range vs {
		capacity, pct := "unlimited", ""
		if v.CapacityBytes > 0 {
			capacity = humanBytes(v.CapacityBytes)
			pct = fmt.Sprintf(" (%.1f%%)", 100*float64(v.UsedBytes)/float64(v.CapacityBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%d\t%s\t%s\t%s\t%d\n", v.ID, capacity, humanBytes(v.UsedBytes), pct, v.UsedInodes,
			orDash(v.Replication), orDash(v.Collection), orDash(v.Source), len(v.Snapshots))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range vs {
		for _, s := range v.Snapshots {
			fmt.Fprintf(w, "  snapshot %s of %s taken %s\n", s.ID, v.ID, s.TakenAt.Format("2006-01-02 15:04:05"))
		}
	}
	return nil
}
