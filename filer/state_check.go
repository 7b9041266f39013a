package filer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrCorrupt is wrapped by every error reporting a broken invariant of the
// state: found by Check, or met while applying a command.
var ErrCorrupt = errors.New("filer: state corrupt")

// Check verifies every invariant of the state: link counts against
// entries, directory parents and reachability, needle reference counts
// against slices and the delete queue, quota usage against the inodes
// charged, orphans, xattrs and snapshots. It returns nil or an error
// wrapping ErrCorrupt listing the first problems found.
func (s *State) Check() error {
	r, err := s.CheckReport()
	if err != nil {
		return err
	}
	return r.Err()
}

// CheckReport is what a check of a member's state found (fs.check).
type CheckReport struct {
	// ApplyIndex is the last Raft log entry the checked state holds.
	ApplyIndex uint64 `json:"apply_index"`
	Inodes     int    `json:"inodes"`
	Pieces     int    `json:"pieces"`  // stored pieces of regular files
	Needles    int    `json:"needles"` // distinct needles (and inline blobs) referenced
	// Problems are the broken invariants found, at most maxCheckProblems;
	// More counts those left out.
	Problems []string `json:"problems,omitempty"`
	More     int      `json:"more,omitempty"`
	// Repairable are the regular files whose pieces overlap or reach past
	// their size, at most maxRepairable, in inode order: Client.RepairPieces
	// (fs.check -repair) fixes them.
	Repairable []uint64 `json:"repairable,omitempty"`
	// RefFixes are the needles whose reference count differs from the
	// pieces naming them (and that are not queued for deletion), at most
	// maxRepairable, in fid order: Client.FixRefs (fs.check -repair) sets
	// their counts.
	RefFixes []RefFix `json:"ref_fixes,omitempty"`
}

// maxRepairable is the most inodes, and the most needles, a CheckReport
// lists as repairable.
const maxRepairable = 100000

// Summary says what the check covered, in one line.
func (r *CheckReport) Summary() string {
	return fmt.Sprintf("log index %d: %d inodes, %d pieces, %d needles referenced", r.ApplyIndex, r.Inodes, r.Pieces, r.Needles)
}

// Err is nil for a sound state, and otherwise an ErrCorrupt listing the
// problems found.
func (r *CheckReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	more := ""
	if r.More > 0 {
		more = fmt.Sprintf("\n... and %d more", r.More)
	}
	return fmt.Errorf("%w: %d problems in the state at log index %d:\n%s%s",
		ErrCorrupt, len(r.Problems)+r.More, r.ApplyIndex, strings.Join(r.Problems, "\n"), more)
}

// maxCheckProblems is the most problems a CheckReport lists.
const maxCheckProblems = 100

// CheckReport runs Check's verification on one consistent view of the
// state and reports what it covered and found. It reads the whole state
// (every inode is held in memory while it runs).
func (s *State) CheckReport() (*CheckReport, error) {
	r := &CheckReport{}
	err := s.view(func(t *txn) error {
		r.ApplyIndex = t.metaU64(metaApplyIndex)
		r.Inodes = t.inodes.Stats().KeyN
		r.Pieces = t.pieces.Stats().KeyN
		r.Needles = t.refs.Stats().KeyN
		f := t.checkAll()
		r.Repairable = f.repairable[:min(len(f.repairable), maxRepairable)]
		r.RefFixes = f.refFixes[:min(len(f.refFixes), maxRepairable)]
		for _, p := range f.problems {
			if len(r.Problems) == maxCheckProblems {
				r.More++
				continue
			}
			r.Problems = append(r.Problems, p.Error())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (t *txn) check() []error {
	return t.checkAll().problems
}

// checkFindings is what checkAll found.
type checkFindings struct {
	problems []error
	// repairable are the regular files whose pieces overlap or pass their
	// size (see RepairedPieces), in inode order.
	repairable []uint64
	// refFixes are the needles whose count differs from their references
	// and that are not queued for deletion (see FixRefs), in fid order.
	refFixes []RefFix
}

// checkAll is check, and also finds what can be repaired.
func (t *txn) checkAll() checkFindings {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var inos []uint64
	inodes := map[uint64]*Inode{}
	t.must(t.inodes.ForEach(func(k, v []byte) error {
		in := &Inode{}
		if err := decodeInode(v, in); err != nil || in.Ino != keyU64(k) {
			bad("inode record %d does not decode to itself", keyU64(k))
			return nil
		}
		inodes[in.Ino] = in
		inos = append(inos, in.Ino)
		return nil
	}))
	if len(inos) > 0 && keyU64(t.meta.Get(metaNextIno)) <= inos[len(inos)-1] {
		bad("next inode number %d is in use", keyU64(t.meta.Get(metaNextIno)))
	}
	if r := inodes[RootIno]; r == nil || !r.IsDir() {
		bad("root directory missing")
		return checkFindings{problems: errs}
	}

	links := map[uint64]uint32{}    // entries pointing at each inode
	dirEntry := map[uint64]uint64{} // directory -> parent holding its entry
	subdirs := map[uint64]uint32{}
	t.must(t.dentries.ForEach(func(k, v []byte) error {
		parent, name, child := keyU64(k), string(k[8:]), keyU64(v)
		p, c := inodes[parent], inodes[child]
		switch {
		case ValidateName(name) != 0:
			bad("entry %q of %d has an invalid name", name, parent)
		case p == nil || !p.IsDir():
			bad("entry %q: parent %d is not a directory", name, parent)
		case c == nil:
			bad("entry %q of %d: inode %d missing", name, parent, child)
		case p.Snapshot != c.Snapshot:
			bad("entry %q of %d crosses snapshots", name, parent)
		case c.IsDir():
			if _, dup := dirEntry[child]; dup {
				bad("directory %d has two entries", child)
			}
			dirEntry[child] = parent
			subdirs[parent]++
		default:
			links[child]++
		}
		return nil
	}))

	snapRoots := map[uint64]uint64{}
	t.must(t.snapshots.ForEach(func(k, v []byte) error {
		var si SnapshotInfo
		t.must(json.Unmarshal(v, &si))
		r := inodes[si.Root]
		if si.ID != keyU64(k) || r == nil || !r.IsDir() || r.Snapshot != si.ID {
			bad("snapshot %d: bad root %d", keyU64(k), si.Root)
		}
		snapRoots[si.Root] = si.ID
		return nil
	}))
	orphans := map[uint64]bool{}
	t.must(t.orphans.ForEach(func(k, _ []byte) error {
		orphans[keyU64(k)] = true
		if in := inodes[keyU64(k)]; in == nil || in.Nlink != 0 {
			bad("orphan %d missing or linked", keyU64(k))
		}
		return nil
	}))

	refs := map[string]uint64{}
	pieceErrs, repairable := t.checkPieces(inodes, refs)
	errs = append(errs, pieceErrs...)
	errs = append(errs, t.checkInlineBlobs(refs)...)
	type use struct{ bytes, inodes uint64 }
	usage := map[uint64]*use{}
	for _, ino := range inos {
		in := inodes[ino]
		errs = append(errs, t.checkInode(in, inodes, links[ino], dirEntry, subdirs[ino], snapRoots, orphans)...)
		if in.Snapshot == 0 {
			u := usage[in.QuotaRoot]
			if u == nil {
				u = &use{}
				usage[in.QuotaRoot] = u
			}
			u.bytes += in.chargedBytes()
			u.inodes++
		}
	}

	var refFixes []RefFix
	t.must(t.refs.ForEach(func(k, v []byte) error {
		queued := t.deleteq.Get(k) != nil
		if n := binary.BigEndian.Uint64(v); n != refs[string(k)] {
			bad("needle %s: count %d, referenced %d times", k, n, refs[string(k)])
			if !queued {
				refFixes = append(refFixes, RefFix{Fid: string(k), Count: n, Refs: refs[string(k)]})
			}
		}
		if queued {
			bad("needle %s is referenced and queued for deletion", k)
		}
		return nil
	}))
	t.must(t.uploads.ForEach(func(k, _ []byte) error {
		if refs[string(k)] > 0 {
			bad("needle %s is referenced and still listed as an upload in flight", k)
		}
		if t.deleteq.Get(k) != nil {
			bad("needle %s is queued for deletion and listed as an upload in flight", k)
		}
		return nil
	}))
	for f, n := range refs {
		if t.refs.Get([]byte(f)) == nil {
			bad("needle %s referenced without a count", f)
			if t.deleteq.Get([]byte(f)) == nil {
				refFixes = append(refFixes, RefFix{Fid: f, Refs: n})
			}
		}
	}
	slices.SortFunc(refFixes, func(a, b RefFix) int { return strings.Compare(a.Fid, b.Fid) })
	t.must(t.quotas.ForEach(func(k, v []byte) error {
		root := keyU64(k)
		var q Quota
		t.must(json.Unmarshal(v, &q))
		u := usage[root]
		if u == nil {
			u = &use{}
		}
		if in := inodes[root]; in == nil || !in.IsDir() || in.Snapshot != 0 {
			bad("quota root %d is not a live directory", root)
		}
		if q.Bytes != u.bytes || q.Inodes != u.inodes {
			bad("quota root %d: usage %d bytes %d inodes, charged %d bytes %d inodes", root, q.Bytes, q.Inodes, u.bytes, u.inodes)
		}
		delete(usage, root)
		return nil
	}))
	for root := range usage {
		bad("inodes charged to %d, which is not a quota root", root)
	}
	t.must(t.xattrs.ForEach(func(k, _ []byte) error {
		if inodes[keyU64(k[:8])] == nil {
			bad("xattr of missing inode %d", keyU64(k[:8]))
		}
		return nil
	}))
	return checkFindings{problems: errs, repairable: repairable, refFixes: refFixes}
}

// checkPieces checks the slices bucket: every piece belongs to a regular
// file, lies within its size, has a needle and does not overlap the
// previous piece of its file. It counts the references in refs, and
// returns the files with pieces overlapping or past their size.
func (t *txn) checkPieces(inodes map[uint64]*Inode, refs map[string]uint64) ([]error, []uint64) {
	var errs []error
	var repairable []uint64
	damaged := func(ino uint64) {
		if len(repairable) == 0 || repairable[len(repairable)-1] != ino {
			repairable = append(repairable, ino)
		}
	}
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var prevIno, prevEnd uint64
	t.must(t.pieces.ForEach(func(k, v []byte) error {
		ino, s, err := decodePiece(k, v)
		if err != nil {
			bad("%v", err)
			return nil
		}
		in := inodes[ino]
		switch {
		case in == nil || !in.IsRegular():
			bad("slice %+v of inode %d, which is not a regular file", s, ino)
		case s.Fid == "" || validateSlice(s) != 0:
			bad("inode %d: bad slice %+v", ino, s)
		case s.end() > in.Size:
			bad("inode %d: slice %+v past the size %d", ino, s, in.Size)
			damaged(ino)
		case ino == prevIno && s.Off < prevEnd:
			bad("inode %d: slice %+v overlaps a piece before it, which ends at %d", ino, s, prevEnd)
			damaged(ino)
		}
		if s.Fid != "" {
			refs[s.Fid]++
		}
		if ino != prevIno {
			prevEnd = 0
		}
		prevIno, prevEnd = ino, max(prevEnd, s.end()) // a piece may overlap any before it
		return nil
	}))
	return errs, repairable
}

func (t *txn) checkInode(in *Inode, inodes map[uint64]*Inode, links uint32, dirEntry map[uint64]uint64,
	subdirs uint32, snapRoots map[uint64]uint64, orphans map[uint64]bool) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("inode %d: "+format, append([]any{in.Ino}, args...)...))
	}
	if in.Snapshot != 0 {
		if t.snapshotInfo(in.Snapshot) == nil {
			bad("in missing snapshot %d", in.Snapshot)
		}
		if in.QuotaRoot != 0 {
			bad("snapshot inode charged to %d", in.QuotaRoot)
		}
	} else if in.QuotaRoot == 0 {
		bad("live inode charged to no quota root")
	}
	switch {
	case in.IsDir():
		parent, hasEntry := dirEntry[in.Ino]
		_, isSnapRoot := snapRoots[in.Ino]
		if in.Ino == RootIno || isSnapRoot {
			if hasEntry || in.Parent != in.Ino {
				bad("root directory with an entry or parent %d", in.Parent)
			}
		} else if !hasEntry || parent != in.Parent {
			bad("parent %d, entry in %d (present %v)", in.Parent, parent, hasEntry)
		}
		if in.Nlink != 2+subdirs {
			bad("directory nlink %d, want %d", in.Nlink, 2+subdirs)
		}
		if in.Size != 0 {
			bad("directory with size")
		}
		if in.Snapshot == 0 {
			want := in.Ino
			if !t.isQuotaRoot(in.Ino) {
				if p := inodes[in.Parent]; p != nil {
					want = t.rootOf(p)
				}
			}
			if in.QuotaRoot != want {
				bad("directory charged to %d, nearest quota root is %d", in.QuotaRoot, want)
			}
		}
		// Reachability: the parent chain ends at a root.
		cur, n := in, 0
		for ; cur != nil && cur.Parent != cur.Ino && n <= len(inodes); n++ {
			cur = inodes[cur.Parent]
		}
		_, curSnap := snapRoots[func() uint64 {
			if cur == nil {
				return 0
			}
			return cur.Ino
		}()]
		if cur == nil || n > len(inodes) || cur.Ino != RootIno && !curSnap {
			bad("directory not reachable from a root")
		}
	default:
		if in.Nlink != links {
			bad("nlink %d, %d entries", in.Nlink, links)
		}
		if in.Nlink == 0 && (!orphans[in.Ino] || !in.IsRegular() || in.Snapshot != 0) {
			bad("unlinked but not an orphan")
		}
		if in.Parent != 0 {
			bad("non-directory with parent %d", in.Parent)
		}
	}
	switch {
	case in.IsSymlink():
		if in.Size != uint64(len(in.Target)) {
			bad("symlink size %d for target of %d bytes", in.Size, len(in.Target))
		}
	case in.IsRegular():
		if in.Size > MaxFileSize {
			bad("size %d too large", in.Size)
		}
	}
	if len(in.Slices) != 0 {
		bad("slice list stored in the inode record (its slices belong in the slices bucket)")
	}
	return errs
}
