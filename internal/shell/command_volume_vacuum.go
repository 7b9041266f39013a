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
		Name:    "volume.vacuum",
		Summary: "compact volumes on every replica, dropping deleted and overwritten needles",
		Usage:   "[-volumeId N] [-garbageThreshold 0.3]",
		Help: `Calls Vacuum on every replica of every volume (or of one volume), one
replica at a time, and prints the bytes before and after. A replica whose
garbage ratio (reclaimable bytes / size) is below the threshold is skipped.
Vacuum is crash-safe on the server: an interrupted vacuum (Ctrl-C) leaves the
old or the new volume file, both complete. Failures on some replicas do not
stop the others; the command fails at the end naming them.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeVacuum{}
			fs.UintVar(&c.vid, "volumeId", 0, "vacuum only this volume (0: all)")
			fs.Float64Var(&c.threshold, "garbageThreshold", 0.3, "skip replicas whose garbage ratio is below this (0: vacuum every replica)")
			return c
		},
	})
}

type volumeVacuum struct {
	vid       uint
	threshold float64
}

// VacuumJSON is one replica's result in volume.vacuum.
type VacuumJSON struct {
	VolumeID    uint32 `json:"volume_id"`
	Server      string `json:"server"`
	Compacted   bool   `json:"compacted"`
	BytesBefore uint64 `json:"bytes_before"`
	BytesAfter  uint64 `json:"bytes_after"`
	Error       string `json:"error,omitempty"`
}

func (c *volumeVacuum) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.vacuum", args, 0, 0, "only flags"); err != nil {
		return err
	}
	if c.threshold < 0 || c.threshold > 1 {
		return fmt.Errorf("%w: volume.vacuum: -garbageThreshold %v must be between 0 and 1", errUsage, c.threshold)
	}
	targets, err := replicaTargets(ctx, env, "volume.vacuum", uint32(c.vid))
	if err != nil {
		return err
	}
	results := []VacuumJSON{}
	var failed []string
	for i, t := range targets {
		if ctx.Err() != nil {
			break
		}
		env.Progressf("volume.vacuum: [%d/%d] volume %d on %s", i+1, len(targets), t.volume.Id, t.server)
		r := VacuumJSON{VolumeID: t.volume.Id, Server: t.server}
		vc, err := env.volumeClient(t.server)
		var resp *pb.VacuumResponse
		if err == nil {
			resp, err = vc.Vacuum(ctx, &pb.VacuumRequest{VolumeId: t.volume.Id, GarbageThreshold: c.threshold})
		}
		if err != nil {
			r.Error = rpcMessage(err)
			failed = append(failed, fmt.Sprintf("volume %d on %s: %s", t.volume.Id, t.server, r.Error))
		} else {
			r.Compacted, r.BytesBefore, r.BytesAfter = resp.Compacted, resp.BytesBefore, resp.BytesAfter
		}
		results = append(results, r)
	}
	if err := env.Emit(results, func(w io.Writer) error { return printVacuum(w, results) }); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("volume.vacuum: interrupted after %d of %d replicas; the rest were not touched, run it again to finish", len(results), len(targets))
	}
	if len(failed) > 0 {
		return fmt.Errorf("volume.vacuum: failed on %d of %d replicas (%s); check those servers with cluster.status and run volume.vacuum -volumeId N again",
			len(failed), len(targets), strings.Join(failed, "; "))
	}
	return nil
}

func printVacuum(w io.Writer, rs []VacuumJSON) error {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no volumes")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "VOLUME\tSERVER\tRESULT\tBEFORE\tAFTER\tRECLAIMED\n")
	var total uint64
	for _, r := range rs {
		switch {
		case r.Error != "":
			fmt.Fprintf(tw, "%d\t%s\tfailed: %s\t-\t-\t-\n", r.VolumeID, r.Server, r.Error)
		case !r.Compacted:
			fmt.Fprintf(tw, "%d\t%s\tskipped (below threshold)\t%s\t%s\t-\n", r.VolumeID, r.Server, humanBytes(r.BytesBefore), humanBytes(r.BytesAfter))
		default:
			saved := r.BytesBefore - min(r.BytesAfter, r.BytesBefore)
			total += saved
			fmt.Fprintf(tw, "%d\t%s\tcompacted\t%s\t%s\t%s\n", r.VolumeID, r.Server, humanBytes(r.BytesBefore), humanBytes(r.BytesAfter), humanBytes(saved))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "reclaimed %s in total\n", humanBytes(total))
	return nil
}
