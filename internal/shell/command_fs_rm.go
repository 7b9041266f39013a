package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/filer"
)

func init() {
	register(&Command{
		Name:        "fs.rm",
		Summary:     "remove a file, or with -r a directory and everything below it",
		Usage:       "[-r] PATH",
		Destructive: true,
		Help: `Removes PATH. A directory must be empty unless -r is given; then its
contents are removed first, entry by entry (each removal is atomic; Ctrl-C
stops between them and leaves a consistent, partly removed tree that a
second fs.rm -r finishes). The data of removed files is freed by the filer's
garbage collector once no snapshot references it.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &fsRm{}
			fs.BoolVar(&c.recursive, "r", false, "remove directories and their contents")
			return c
		},
	})
}

type fsRm struct{ recursive bool }

// RemoveJSON is the JSON output of fs.rm.
type RemoveJSON struct {
	Path    string `json:"path"`
	Removed uint64 `json:"removed"` // entries removed
}

func (c *fsRm) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.rm", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	fc, p, in, err := resolvePath(ctx, env, "fs.rm", args[0])
	if err != nil {
		return err
	}
	if p == "/" {
		return errors.New("fs.rm /: refusing to remove the root directory")
	}
	if in.IsDir() && !c.recursive {
		ents, err := fc.ReadDir(ctx, in.Ino, "", 1)
		if err != nil {
			return fsError("fs.rm", p, err)
		}
		if len(ents) > 0 {
			return fsError("fs.rm", p, syscall.ENOTEMPTY)
		}
	}
	what := "remove " + p
	if in.IsDir() && c.recursive {
		what += " and everything below it"
	}
	if err := env.Confirm(what); err != nil {
		return fmt.Errorf("fs.rm %s: %w", p, err)
	}
	parent, err := fc.Resolve(ctx, path.Dir(p))
	if err != nil {
		return fsError("fs.rm", path.Dir(p), err)
	}
	r := &remover{ctx: ctx, env: env, fc: fc, last: time.Now()}
	err = r.remove(parent.Ino, path.Base(p), p, in.IsDir())
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("fs.rm %s: interrupted after removing %d entries; the tree is consistent but partly removed, run fs.rm -r %s again to finish", p, r.removed, p)
		}
		return err
	}
	out := RemoveJSON{Path: p, Removed: r.removed}
	return env.Emit(out, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "removed %s (%d entries)\n", p, r.removed)
		return err
	})
}

// remover removes trees entry by entry, reporting progress.
type remover struct {
	ctx     context.Context
	env     *Env
	fc      *filer.Client
	removed uint64
	last    time.Time
}

func (r *remover) remove(parent uint64, name, p string, isDir bool) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	var op filer.Op = &filer.Unlink{Parent: parent, Name: name}
	if isDir {
		in, err := r.fc.Lookup(r.ctx, parent, name)
		if err != nil {
			return fsError("fs.rm", p, err)
		}
		for {
			ents, err := r.fc.ReadDir(r.ctx, in.Ino, "", readDirPage)
			if err != nil {
				return fsError("fs.rm", p, err)
			}
			if len(ents) == 0 {
				break
			}
			for _, e := range ents {
				err := r.remove(in.Ino, e.Name, joinPath(p, e.Name), typeName(e.Mode) == "dir")
				if err != nil && !errors.Is(err, syscall.ENOENT) {
					return err
				}
			}
		}
		op = &filer.Rmdir{Parent: parent, Name: name}
	}
	if _, err := r.fc.Apply(r.ctx, op); err != nil {
		if errors.Is(err, syscall.ENOENT) { // removed concurrently
			return nil
		}
		return fsError("fs.rm", p, err)
	}
	r.removed++
	if time.Since(r.last) > 2*time.Second {
		r.env.Progressf("fs.rm: %d entries removed, at %s", r.removed, p)
		r.last = time.Now()
	}
	return nil
}
