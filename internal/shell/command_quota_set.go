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
		Name:    "quota.set",
		Summary: "make a directory a quota root or change its limits",
		Usage:   "PATH [-bytes N] [-inodes N] [-remove]",
		Help: `Sets the limits of directory PATH (0: unlimited), making it a quota root if
it is not one. A limit not given keeps its current value. Limits below the
current usage are accepted; further growth then fails with EDQUOT. -remove
drops the quota root; its usage moves to the enclosing quota root.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &quotaSet{}
			fs.StringVar(&c.bytes, "bytes", "", "byte limit, like 1073741824, 512M or 10GiB (0: unlimited)")
			fs.StringVar(&c.inodes, "inodes", "", "inode limit (0: unlimited)")
			fs.BoolVar(&c.remove, "remove", false, "drop the quota root")
			return c
		},
	})
}

type quotaSet struct {
	bytes, inodes string
	remove        bool
}

func (c *quotaSet) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("quota.set", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	if !c.remove && c.bytes == "" && c.inodes == "" {
		return fmt.Errorf("%w: quota.set: give -bytes, -inodes or -remove (see help quota.set)", errUsage)
	}
	if c.remove && (c.bytes != "" || c.inodes != "") {
		return fmt.Errorf("%w: quota.set: -remove takes no limits", errUsage)
	}
	fc, p, in, err := resolvePath(ctx, env, "quota.set", args[0])
	if err != nil {
		return err
	}
	if !in.IsDir() {
		return fmt.Errorf("quota.set %s: not a directory; quotas apply to directories", p)
	}
	cur, err := quotaOf(ctx, fc, p, in.Ino)
	if err != nil {
		return fsError("quota.set", p, err)
	}
	op := &filer.SetQuota{Ino: in.Ino, Remove: c.remove}
	if cur.IsRoot {
		op.MaxBytes, op.MaxInodes = cur.MaxBytes, cur.MaxInodes
	}
	if c.bytes != "" {
		if op.MaxBytes, err = parseSize(c.bytes); err != nil {
			return fmt.Errorf("%w: quota.set -bytes: %v", errUsage, err)
		}
	}
	if c.inodes != "" {
		if op.MaxInodes, err = parseSize(c.inodes); err != nil {
			return fmt.Errorf("%w: quota.set -inodes: %v", errUsage, err)
		}
	}
	if c.remove && !cur.IsRoot {
		return fmt.Errorf("quota.set %s: not a quota root (its quota root is inode %d); nothing to remove", p, cur.Root)
	}
	if _, err := fc.Apply(ctx, op); err != nil {
		return fsError("quota.set", p, err)
	}
	q, err := quotaOf(ctx, fc, p, in.Ino)
	if err != nil {
		return fsError("quota.set", p, err)
	}
	return env.Emit(q, func(w io.Writer) error { return printQuota(w, q) })
}
