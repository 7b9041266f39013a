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
		Name:    "fs.tree",
		Summary: "show a directory tree",
		Usage:   "[-depth N] PATH",
		New: func(fs *flag.FlagSet) Runner {
			c := &fsTree{}
			fs.IntVar(&c.depth, "depth", 0, "descend at most this many levels (0: no limit)")
			return c
		},
	})
}

type fsTree struct{ depth int }

func (c *fsTree) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.tree", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	fc, p, in, err := resolvePath(ctx, env, "fs.tree", args[0])
	if err != nil {
		return err
	}
	root := EntryJSON{Name: p, Ino: in.Ino, Type: typeName(in.Mode), Size: in.Size, Target: in.Target}
	dirs, files := 0, 0
	var walk func(n *EntryJSON, p string, level int) error
	walk = func(n *EntryJSON, p string, level int) error {
		if n.Type != "dir" || (c.depth > 0 && level >= c.depth) {
			return nil
		}
		err := eachEntry(ctx, fc, n.Ino, func(e filer.DirEntry) error {
			n.Children = append(n.Children, EntryJSON{Name: e.Name, Ino: e.Ino, Type: typeName(e.Mode)})
			return nil
		})
		if err != nil {
			return fsError("fs.tree", p, err)
		}
		for i := range n.Children {
			ch := &n.Children[i]
			if ch.Type == "dir" {
				dirs++
			} else {
				files++
			}
			if err := walk(ch, joinPath(p, ch.Name), level+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(&root, p, 0); err != nil {
		return err
	}
	return env.Emit(root, func(w io.Writer) error {
		fmt.Fprintln(w, root.Name)
		printTree(w, root.Children, "")
		fmt.Fprintf(w, "\n%d directories, %d files\n", dirs, files)
		return nil
	})
}

func printTree(w io.Writer, es []EntryJSON, indent string) {
	for i, e := range es {
		branch, next := "├── ", "│   "
		if i == len(es)-1 {
			branch, next = "└── ", "    "
		}
		name := e.Name
		if e.Type == "dir" {
			name += "/"
		}
		fmt.Fprintf(w, "%s%s%s\n", indent, branch, name)
		printTree(w, e.Children, indent+next)
	}
}
