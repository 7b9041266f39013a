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
		Name:    "volume.scrub",
		Summary: "verify every needle's checksum on every replica and repair corrupt ones",
		Usage:   "[-volumeId N] [-no-repair]",
		Help: `Asks every replica of every volume (or of one volume) to re-read each live
needle and check its CRC, one replica at a time. A corrupt needle is
replaced by a verified copy from another replica (unless -no-repair). A
needle corrupt on every replica cannot be repaired: the command fails naming
it, and the file using it must be restored from a backup. Ctrl-C stops
between needles; every needle is then either as it was or repaired.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeScrub{}
			fs.UintVar(&c.vid, "volumeId", 0, "scrub only this volume (0: all)")
			fs.BoolVar(&c.noRepair, "no-repair", false, "only report corrupt needles, do not repair them")
			return c
		},
	})
}

type volumeScrub struct {
	vid      uint
	noRepair bool
}

// ScrubJSON is one replica's result in volume.scrub.
type ScrubJSON struct {
	VolumeID uint32   `json:"volume_id"`
	Server   string   `json:"server"`
	Checked  uint64   `json:"checked"`
	Corrupt  uint64   `json:"corrupt"`
	Repaired uint64   `json:"repaired"`
	Errors   []string `json:"errors,omitempty"` // needles left corrupt
	Error    string   `json:"error,omitempty"`  // the scrub itself failed
}

func (c *volumeScrub) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.scrub", args, 0, 0, "only flags"); err != nil {
		return err
	}
	targets, err := replicaTargets(ctx, env, "volume.scrub", uint32(c.vid))
	if err != nil {
		return err
	}
	results := []ScrubJSON{}
	var problems []string
	for i, t := range targets {
		if ctx.Err() != nil {
			break
		}
		env.Progressf("volume.scrub: [%d/%d] volume %d on %s", i+1, len(targets), t.volume.Id, t.server)
		r := ScrubJSON{VolumeID: t.volume.Id, Server: t.server}
		vc, err := env.volumeClient(t.server)
		var resp *pb.ScrubResponse
		if err == nil {
			resp, err = vc.Scrub(ctx, &pb.ScrubRequest{VolumeId: t.volume.Id, Repair: !c.noRepair})
		}
		switch {
		case err != nil:
			r.Error = rpcMessage(err)
			problems = append(problems, fmt.Sprintf("volume %d on %s: scrub failed: %s", t.volume.Id, t.server, r.Error))
		default:
			r.Checked, r.Corrupt, r.Repaired, r.Errors = resp.Checked, resp.Corrupt, resp.Repaired, resp.Errors
			if left := r.Corrupt - min(r.Repaired, r.Corrupt); left > 0 {
				what := fmt.Sprintf("volume %d on %s: %d corrupt needle(s) not repaired", t.volume.Id, t.server, left)
				if len(r.Errors) > 0 {
					what += " (" + strings.Join(r.Errors, "; ") + ")"
				}
				problems = append(problems, what)
			}
		}
		results = append(results, r)
	}
	if err := env.Emit(results, func(w io.Writer) error { return printScrub(w, results) }); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("volume.scrub: interrupted after %d of %d replicas; run it again to check the rest", len(results), len(targets))
	}
	if len(problems) > 0 {
		hint := "restore the affected files from a backup, or rerun once the other replicas are reachable"
		if c.noRepair {
			hint = "run volume.scrub without -no-repair to repair them from healthy replicas"
		}
		return fmt.Errorf("volume.scrub: %s; %s", strings.Join(problems, "; "), hint)
	}
	return nil
}

func printScrub(w io.Writer, rs []ScrubJSON) error {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no volumes")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "VOLUME\tSERVER\tCHECKED\tCORRUPT\tREPAIRED\n")
	var checked, corrupt, repaired uint64
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(tw, "%d\t%s\tfailed: %s\t-\t-\n", r.VolumeID, r.Server, r.Error)
			continue
		}
		checked, corrupt, repaired = checked+r.Checked, corrupt+r.Corrupt, repaired+r.Repaired
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\n", r.VolumeID, r.Server, r.Checked, r.Corrupt, r.Repaired)
	}
	tw.Flush()
	fmt.Fprintf(w, "checked %d needles: %d corrupt, %d repaired\n", checked, corrupt, repaired)
	return nil
}
