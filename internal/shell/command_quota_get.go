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
		Name:    "quota.get",
		Summary: "show the quota that applies to a path: limits and usage",
		Usage:   "PATH",
		Help: `Every inode is charged to its nearest quota root (the root directory always
is one). Shows that root, its limits (0: unlimited) and its usage.`,
		New: func(*flag.FlagSet) Runner { return quotaGet{} },
	})
}

type quotaGet struct{}

// QuotaJSON is the JSON output of quota.get and quota.set.
type QuotaJSON struct {
	Path      string `json:"path"`
	Ino       uint64 `json:"ino"`
	Root      uint64 `json:"quota_root"`    // inode of the quota root
	IsRoot    bool   `json:"is_quota_root"` // PATH itself is the quota root
	MaxBytes  uint64 `json:"max_bytes"`     // 0: unlimited
	MaxInodes uint64 `json:"max_inodes"`    // 0: unlimited
	Bytes     uint64 `json:"bytes"`
	Inodes    uint64 `json:"inodes"`
}

func quotaOf(ctx context.Context, fc *filer.Client, p string, ino uint64) (QuotaJSON, error) {
	st, err := fc.Statfs(ctx, ino)
	if err != nil {
		return QuotaJSON{}, err
	}
	return QuotaJSON{
		Path: p, Ino: ino, Root: st.Root, IsRoot: st.Root == ino,
		MaxBytes: st.MaxBytes, MaxInodes: st.MaxInodes, Bytes: st.Bytes, Inodes: st.Inodes,
	}, nil
}

func (quotaGet) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("quota.get", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	fc, p, in, err := resolvePath(ctx, env, "quota.get", args[0])
	if err != nil {
		return err
	}
	q, err := quotaOf(ctx, fc, p, in.Ino)
	if err != nil {
		return fsError("quota.get", p, err)
	}
	return env.Emit(q, func(w io.Writer) error { return printQuota(w, q) })
}

func printQuota(w io.Writer, q QuotaJSON) error {
	tw := newTable(w)
	root := fmt.Sprintf("inode %d", q.Root)
	if q.IsRoot {
		root = q.Path + " itself"
	}
	fmt.Fprintf(tw, "path:\t%s\n", q.Path)
	fmt.Fprintf(tw, "quota root:\t%s\n", root)
	fmt.Fprintf(tw, "bytes:\t%s\n", usageLine(q.Bytes, q.MaxBytes, humanBytes))
	fmt.Fprintf(tw, "inodes:\t%s\n", usageLine(q.Inodes, q.MaxInodes, func(n uint64) string { return fmt.Sprint(n) }))
	return tw.Flush()
}

func usageLine(used, limit uint64, f func(uint64) string) string {
	if limit == 0 {
		return fmt.Sprintf("%s used, unlimited", f(used))
	}
	return fmt.Sprintf("%s used of %s (%.1f%%)", f(used), f(limit), 100*float64(used)/float64(limit))
}
