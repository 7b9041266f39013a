package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/cairn-storage/cairn/filer"
	"google.golang.org/grpc/status"
)

func init() {
	register(&Command{
		Name:    "fs.check",
		Summary: "verify the filer's metadata against every invariant it keeps",
		Usage:   "[-all | -repair]",
		Help: `Checks the filer leader's state: link counts against directory entries,
every directory reachable from the root, each file's pieces in order, not
overlapping and within its size, needle reference counts against the pieces
and the delete queue, inline data, quota usage, orphans, xattrs and
snapshots. With -all, every filer given with --filer checks its own copy of
the state (each member applies the same log, so their reports should agree).

The check reads the whole state in one consistent view while the filer keeps
serving; on a state of millions of inodes it takes a while and holds every
inode in the filer's memory. It changes nothing. It fails when a problem is
found: report the problems listed, they mean the metadata is damaged.

With -repair, files whose pieces overlap or reach past their size (the
damage an earlier version's piece search could leave) are repaired through
the leader, keeping the bytes written last. Each repair is one metadata
command, guarded like a compaction: a file written meanwhile is read and
repaired again. Then needles whose reference count differs from the
pieces naming them get the count of their references (a needle named by
none is freed), guarded by the count the check saw; and the state is
checked again. Every member of the filer group must run a version that
knows these repairs. Other problems are not repaired.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &fsCheck{}
			fs.BoolVar(&c.all, "all", false, "check every filer's own copy of the state, not only the leader's")
			fs.BoolVar(&c.repair, "repair", false, "repair files whose pieces overlap or pass their size and wrong needle reference counts, then check again")
			return c
		},
	})
}

type fsCheck struct{ all, repair bool }

// FsCheckJSON is one filer's report in fs.check.
type FsCheckJSON struct {
	Filer string `json:"filer"` // "leader", or the address checked with -all
	filer.CheckReport
	Error string `json:"error,omitempty"` // the filer could not be asked
	// Repaired are the files -repair repaired before this report.
	Repaired []uint64 `json:"repaired,omitempty"`
	// RefsFixed is how many needles' reference counts -repair set before
	// this report.
	RefsFixed int `json:"refs_fixed,omitempty"`
}

func (c *fsCheck) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.check", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	if c.all && c.repair {
		return fmt.Errorf("fs.check: -repair works through the leader; give it without -all")
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
		var repaired []uint64
		if c.repair && len(r.Repairable) > 0 {
			if repaired, err = repairPieces(ctx, env, fc, r.Repairable); err != nil {
				return err
			}
			env.Progressf("fs.check: checking the filer leader's state again")
			if r, err = fc.CheckState(ctx); err != nil {
				return fmt.Errorf("fs.check: %w", err)
			}
		}
		fixed := 0
		if c.repair && len(r.RefFixes) > 0 {
			if r, fixed, err = fixRefs(ctx, env, fc, r); err != nil {
				return err
			}
		}
		out = append(out, FsCheckJSON{Filer: "leader", CheckReport: *r, Repaired: repaired, RefsFixed: fixed})
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

// repairPieces repairs the pieces of each file in inos through the leader
// and returns those it changed. It stops at the first file it cannot
// repair; those repaired before stay repaired.
func repairPieces(ctx context.Context, env *Env, fc *filer.Client, inos []uint64) ([]uint64, error) {
	var repaired []uint64
	for i, ino := range inos {
		env.Progressf("fs.check: repairing the pieces of inode %d (%d of %d)", ino, i+1, len(inos))
		changed, err := fc.RepairPieces(ctx, ino)
		if err != nil {
			return repaired, fmt.Errorf("fs.check: %d of %d files repaired, then: %w", len(repaired), len(inos), err)
		}
		if changed {
			repaired = append(repaired, ino)
		}
	}
	return repaired, nil
}

// fixRefs sets the reference counts check r of the leader's state lists as
// wrong, then checks again, and returns that check and how many counts it
// set. A count that moved since the check refuses the fix (FixRefs): the
// state is checked again and the fix retried, a few times.
func fixRefs(ctx context.Context, env *Env, fc *filer.Client, r *filer.CheckReport) (*filer.CheckReport, int, error) {
	total := 0
	for attempt := 1; len(r.RefFixes) > 0 && attempt <= 3; attempt++ {
		env.Progressf("fs.check: setting the reference counts of %d needles", len(r.RefFixes))
		fixed, err := fc.FixRefs(ctx, r.RefFixes)
		total += fixed
		if err != nil && (!errors.Is(err, syscall.EAGAIN) || attempt == 3) {
			return nil, total, fmt.Errorf("fs.check: %d reference counts set, then: %w", total, err)
		}
		env.Progressf("fs.check: checking the filer leader's state again")
		if r, err = fc.CheckState(ctx); err != nil {
			return nil, total, fmt.Errorf("fs.check: %w", err)
		}
	}
	return r, total, nil
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
		if len(r.Repaired) > 0 {
			fmt.Fprintf(w, "%s: repaired the pieces of %d files: inodes %s\n", r.Filer, len(r.Repaired), inoList(r.Repaired, 20))
		}
		if r.RefsFixed > 0 {
			fmt.Fprintf(w, "%s: set the reference counts of %d needles to the pieces naming them\n", r.Filer, r.RefsFixed)
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", r.Filer, verdict, r.Summary())
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if r.More > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", r.More)
		}
		if len(r.Repairable) > 0 {
			fmt.Fprintf(w, "  the pieces of %d files can be repaired with fs.check -repair: inodes %s\n", len(r.Repairable), inoList(r.Repairable, 20))
		}
		if len(r.RefFixes) > 0 {
			fmt.Fprintf(w, "  the reference counts of %d needles can be repaired with fs.check -repair\n", len(r.RefFixes))
		}
	}
	return nil
}

// inoList formats up to max inode numbers, saying how many more there are.
func inoList(inos []uint64, max int) string {
	var b strings.Builder
	for i, ino := range inos {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(inos)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, ino)
	}
	return b.String()
}
