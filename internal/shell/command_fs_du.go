package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cairn-storage/cairn/filer"
)

func init() {
	register(&Command{
		Name:    "fs.du",
		Summary: "bytes and inodes used under a path, per entry and in total",
		Usage:   "PATH",
		Help: `Walks the tree under PATH and sums file sizes (bytes) and inodes (files,
directories and symlinks, PATH itself included), counting a hard-linked file
once. For a directory it prints one line per entry and the total.`,
		New: func(*flag.FlagSet) Runner { return fsDu{} },
	})
}

type fsDu struct{}

// DuJSON is one line of fs.du.
type DuJSON struct {
	Path   string `json:"path"`
	Bytes  uint64 `json:"bytes"`
	Inodes uint64 `json:"inodes"`
}

// DuOutputJSON is the JSON output of fs.du.
type DuOutputJSON struct {
	Entries []DuJSON `json:"entries"`
	Total   DuJSON   `json:"total"`
}

// duWalker sums usage, counting each inode once and reporting progress.
type duWalker struct {
	ctx    context.Context
	env    *Env
	fc     *filer.Client
	seen   map[uint64]bool
	walked uint64
	last   time.Time
}

// usage returns the bytes and inodes of the entry (ino, mode) and below.
func (d *duWalker) usage(p string, ino uint64, mode uint32) (bytes, inodes uint64, err error) {
	if d.seen[ino] {
		return 0, 0, nil
	}
	d.seen[ino] = true
	d.walked++
	if time.Since(d.last) > 2*time.Second {
		d.env.Progressf("fs.du: %d inodes walked, at %s", d.walked, p)
		d.last = time.Now()
	}
	if typeName(mode) != "dir" {
		in, err := d.fc.GetAttr(d.ctx, ino)
		if err != nil {
			return 0, 0, fsError("fs.du", p, err)
		}
		return in.Size, 1, nil
	}
	inodes = 1
	err = eachEntry(d.ctx, d.fc, ino, func(e filer.DirEntry) error {
		b, n, err := d.usage(joinPath(p, e.Name), e.Ino, e.Mode)
		bytes, inodes = bytes+b, inodes+n
		return err
	})
	if err != nil {
		return 0, 0, fsError("fs.du", p, err)
	}
	return bytes, inodes, nil
}

func (fsDu) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.du", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	fc, p, in, err := resolvePath(ctx, env, "fs.du", args[0])
	if err != nil {
		return err
	}
	d := &duWalker{ctx: ctx, env: env, fc: fc, seen: map[uint64]bool{}, last: time.Now()}
	out := DuOutputJSON{Entries: []DuJSON{}, Total: DuJSON{Path: p}}
	if !in.IsDir() {
		out.Total.Bytes, out.Total.Inodes = in.Size, 1
	} else {
		d.seen[in.Ino] = true
		out.Total.Inodes = 1
		err = eachEntry(ctx, fc, in.Ino, func(e filer.DirEntry) error {
			cp := joinPath(p, e.Name)
			b, n, err := d.usage(cp, e.Ino, e.Mode)
			if err != nil {
				return err
			}
			out.Entries = append(out.Entries, DuJSON{Path: cp, Bytes: b, Inodes: n})
			out.Total.Bytes += b
			out.Total.Inodes += n
			return nil
		})
		if err != nil {
			return fsError("fs.du", p, err)
		}
	}
	return env.Emit(out, func(w io.Writer) error {
		tw := newTable(w)
		fmt.Fprintf(tw, "BYTES\t\tINODES\tPATH\n")
		for _, e := range append(out.Entries, out.Total) {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", e.Bytes, humanBytes(e.Bytes), e.Inodes, e.Path)
		}
		return tw.Flush()
	})
}
