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
		Name:    "fs.ls",
		Summary: "list a directory (or show one file)",
		Usage:   "[-l] PATH",
		New: func(fs *flag.FlagSet) Runner {
			c := &fsLs{}
			fs.BoolVar(&c.long, "l", false, "long listing: permissions, links, owner, size, modification time")
			return c
		},
	})
}

type fsLs struct{ long bool }

// EntryJSON is one directory entry in fs.ls and fs.tree.
type EntryJSON struct {
	Name     string      `json:"name"`
	Ino      uint64      `json:"ino"`
	Type     string      `json:"type"`
	Mode     string      `json:"mode,omitempty"`
	Nlink    uint32      `json:"nlink,omitempty"`
	Uid      uint32      `json:"uid,omitempty"`
	Gid      uint32      `json:"gid,omitempty"`
	Size     uint64      `json:"size,omitempty"`
	Mtime    int64       `json:"mtime_ns,omitempty"`
	Target   string      `json:"target,omitempty"`
	Children []EntryJSON `json:"children,omitempty"`
}

func entryOf(name string, in *filer.Inode) EntryJSON {
	return EntryJSON{
		Name: name, Ino: in.Ino, Type: typeName(in.Mode), Mode: modeString(in.Mode), Nlink: in.Nlink,
		Uid: in.Uid, Gid: in.Gid, Size: in.Size, Mtime: in.Mtime, Target: in.Target,
	}
}

func (c *fsLs) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.ls", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	fc, p, in, err := resolvePath(ctx, env, "fs.ls", args[0])
	if err != nil {
		return err
	}
	out := []EntryJSON{}
	if !in.IsDir() {
		out = append(out, entryOf(p, in))
	} else {
		err = eachEntry(ctx, fc, in.Ino, func(e filer.DirEntry) error {
			if !c.long {
				out = append(out, EntryJSON{Name: e.Name, Ino: e.Ino, Type: typeName(e.Mode)})
				return nil
			}
			ein, err := fc.GetAttr(ctx, e.Ino)
			if err != nil {
				return fsError("fs.ls", joinPath(p, e.Name), err)
			}
			out = append(out, entryOf(e.Name, ein))
			return nil
		})
		if err != nil {
			return fsError("fs.ls", p, err)
		}
	}
	return env.Emit(out, func(w io.Writer) error {
		if !c.long {
			for _, e := range out {
				suffix := ""
				if e.Type == "dir" {
					suffix = "/"
				}
				fmt.Fprintf(w, "%s%s\n", e.Name, suffix)
			}
			return nil
		}
		tw := newTable(w)
		for _, e := range out {
			name := e.Name
			if e.Target != "" {
				name += " -> " + e.Target
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", e.Mode, e.Nlink, e.Uid, e.Gid, e.Size, formatTime(e.Mtime), name)
		}
		return tw.Flush()
	})
}
