package shell

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cairn-storage/cairn/filer"
)

func init() {
	register(&Command{
		Name:    "fs.stat",
		Summary: "show an inode's attributes, quota root and data slices",
		Usage:   "PATH",
		New:     func(*flag.FlagSet) Runner { return fsStat{} },
	})
}

type fsStat struct{}

// StatJSON is the JSON output of fs.stat.
type StatJSON struct {
	Path string `json:"path"`
	Type string `json:"type"`
	*filer.Inode
}

func (fsStat) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.stat", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	_, p, in, err := resolvePath(ctx, env, "fs.stat", args[0])
	if err != nil {
		return err
	}
	out := StatJSON{Path: p, Type: typeName(in.Mode), Inode: in}
	return env.Emit(out, func(w io.Writer) error {
		tw := newTable(w)
		fmt.Fprintf(tw, "path:\t%s\n", p)
		fmt.Fprintf(tw, "inode:\t%d\n", in.Ino)
		fmt.Fprintf(tw, "type:\t%s\n", out.Type)
		fmt.Fprintf(tw, "mode:\t%s (%04o)\n", modeString(in.Mode), in.Mode&0o7777)
		fmt.Fprintf(tw, "links:\t%d\n", in.Nlink)
		fmt.Fprintf(tw, "owner:\tuid %d, gid %d\n", in.Uid, in.Gid)
		fmt.Fprintf(tw, "size:\t%d (%s)\n", in.Size, humanBytes(in.Size))
		fmt.Fprintf(tw, "modified:\t%s\n", formatTime(in.Mtime))
		fmt.Fprintf(tw, "changed:\t%s\n", formatTime(in.Ctime))
		fmt.Fprintf(tw, "accessed:\t%s\n", formatTime(in.Atime))
		if in.Target != "" {
			fmt.Fprintf(tw, "target:\t%s\n", in.Target)
		}
		if in.QuotaRoot != 0 {
			fmt.Fprintf(tw, "quota root:\tinode %d\n", in.QuotaRoot)
		}
		if in.Snapshot != 0 {
			fmt.Fprintf(tw, "snapshot:\t%d (read-only)\n", in.Snapshot)
		}
		if in.IsRegular() {
			fmt.Fprintf(tw, "generation:\t%d\n", in.Generation)
			fmt.Fprintf(tw, "slices:\t%d\n", len(in.Slices))
		}
		tw.Flush()
		for _, s := range in.Slices {
			fid := s.Fid
			if fid == "" {
				fid = "(hole)"
			}
			fmt.Fprintf(w, "  [%d, %d) %s +%d\n", s.Off, s.Off+s.Len, fid, s.NeedleOff)
		}
		return nil
	})
}
