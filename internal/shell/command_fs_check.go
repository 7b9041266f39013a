package shell

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cairn-storage/cairn/filer"
	"google.golang.org/grpc/status"
)

func init() {
	register(&Command{
		Name:    "fs.check",
		Summary: "verify the filer's metadata against every invariant it keeps",
		Usage:   "[-all]",
		Help: `Checks the filer leader's state: link counts against directory entries,
every directory reachable from the root, each file's pieces in order, not
overlapping and within its size, needle reference counts against the pieces
and the delete queue, inline data, quota usage, orphans, xattrs and
snapshots. With -all, every filer given with --filer checks its own copy of
the state (each member applies the same log, so their reports should agree).

The check reads the whole state in one consistent view while the filer keeps
serving; on a state of millions of inodes it takes a while and holds every
inode in the filer's memory. It changes nothing. It fails when a problem is
found: report the problems listed, they mean the metadata is damaged.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &fsCheck{}
			fs.BoolVar(&c.all, "all", false, "check every filer's own copy of the state, not only the leader's")
			return c
		},
	})
}

type fsCheck struct{ all bool }

// FsCheckJSON is one filer's report in fs.check.
type FsCheckJSON struct {
	Filer string `json:"filer"` // "leader", or the address checked with -all
	filer.CheckReport
	Error string `json:"error,omitempty"` // the filer could not be asked
}

func (c *fsCheck) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.check", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	var out []FsCheckJSON
	if !c.all {
		fc, err := env.Filer()
		if err != nil {
			return err
		}
		env.Progressf("fs.check: checking the filer leader's state")
		r, err := fc.CheckState(ctx)
		if err != nil {
			return fmt.Errorf("fs.check: %w", err)
		}
		out = append(out, FsCheckJSON{Filer: "leader", CheckReport: *r})
	} else {
		if len(env.Filers) == 0 {
			return fmt.Errorf("fs.check: no filer configured; start the shell with --filer host:8888")
		}
		for _, addr := range env.Filers {
			env.Progressf("fs.check: checking the state of %s", addr)
			r, err := checkMember(ctx, env, addr)
			if err != nil {
				out = append(out, FsCheckJSON{Filer: addr, Error: status.Convert(err).Message()})
				continue
			}
			out = append(out, FsCheckJSON{Filer: addr, CheckReport: *r})
		}
	}
	if err := env.Emit(out, func(w io.Writer) error { return printFsCheck(w, out) }); err != nil {
		return err
	}
	damaged, unreachable := 0, 0
	for _, r := range out {
		switch {
		case r.Error != "":
			unreachable++
		case len(r.Problems) > 0:
			damaged++
		}
	}
	switch {
	case damaged > 0:
		return fmt.Errorf("fs.check: problems found in %d of %d states checked", damaged, len(out))
	case unreachable > 0:
		return fmt.Errorf("fs.check: %d of %d filers could not be checked", unreachable, len(out))
	}
	return nil
}

// checkMember asks the filer at addr to check its own state (not the
// leader's: the read is served by that member).
func checkMember(ctx context.Context, env *Env, addr string) (*filer.CheckReport, error) {
	fc, err := env.filerClientAt(addr)
	if err != nil {
		return nil, err
	}
	return filer.CheckMember(ctx, fc)
}

func printFsCheck(w io.Writer, out []FsCheckJSON) error {
	for _, r := range out {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: not checked: %s\n", r.Filer, r.Error)
			continue
		}
		verdict := "ok"
		if n := len(r.Problems) + r.More; n > 0 {
			verdict = fmt.Sprintf("%d problems", n)
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", r.Filer, verdict, r.Summary())
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if r.More > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", r.More)
		}
	}
	return nil
}
