package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"syscall"

	"github.com/cairn-storage/cairn/filer"
)

func init() {
	register(&Command{
		Name:    "fs.mv",
		Summary: "move or rename a file or directory (atomic)",
		Usage:   "SRC DST",
		Help: `Renames SRC to DST in one atomic step, replacing an existing file or empty
directory at DST. If DST is an existing directory, SRC moves into it. Moves
between quota roots carry the usage along (EDQUOT if DST's root has no room).`,
		New: func(*flag.FlagSet) Runner { return fsMv{} },
	})
}

type fsMv struct{}

// MoveJSON is the JSON output of fs.mv.
type MoveJSON struct {
	From string `json:"from"`
	To   string `json:"to"`
	Ino  uint64 `json:"ino"`
}

func (fsMv) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.mv", args, 2, 2, "SRC and DST"); err != nil {
		return err
	}
	fc, src, _, err := resolvePath(ctx, env, "fs.mv", args[0])
	if err != nil {
		return err
	}
	if src == "/" {
		return errors.New("fs.mv /: the root directory cannot be moved")
	}
	dst, err := cleanPath(args[1])
	if err != nil {
		return fsError("fs.mv", args[1], err)
	}
	if in, err := fc.Resolve(ctx, dst); err == nil && in.IsDir() {
		dst = path.Join(dst, path.Base(src))
	} else if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fsError("fs.mv", dst, err)
	}
	if dst == src {
		return fmt.Errorf("fs.mv %s: source and destination are the same", src)
	}
	srcDir, err := fc.Resolve(ctx, path.Dir(src))
	if err != nil {
		return fsError("fs.mv", path.Dir(src), err)
	}
	dstDir, err := fc.Resolve(ctx, path.Dir(dst))
	if err != nil {
		return fsError("fs.mv", path.Dir(dst), fmt.Errorf("destination directory: %w", err))
	}
	res, err := fc.Apply(ctx, &filer.Rename{OldParent: srcDir.Ino, OldName: path.Base(src), NewParent: dstDir.Ino, NewName: path.Base(dst)})
	if err != nil {
		return fsError("fs.mv", src+" to "+dst, err)
	}
	out := MoveJSON{From: src, To: dst}
	if res.Inode != nil {
		out.Ino = res.Inode.Ino
	}
	return env.Emit(out, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "moved %s to %s\n", src, dst)
		return err
	})
}
