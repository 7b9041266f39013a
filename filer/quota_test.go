package filer

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
)

func TestQuotaBasics(t *testing.T) {
	s := newTestState(t)
	a := s.ok(&Mkdir{Parent: RootIno, Name: "a"}).Inode
	b := s.ok(&Mkdir{Parent: RootIno, Name: "b"}).Inode
	s.ok(&SetQuota{Ino: a.Ino, MaxBytes: 100, MaxInodes: 3})
	s.ok(&SetQuota{Ino: b.Ino, MaxBytes: 1000})
	f := s.ok(&Create{Parent: a.Ino, Name: "f"}).Inode
	s.fails(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 101}, syscall.EDQUOT)
	s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 100})
	st, _ := s.Statfs(f.Ino)
	if st.Root != a.Ino || st.Bytes != 100 || st.Inodes != 2 {
		t.Fatalf("statfs %+v", st)
	}
	s.ok(&Mkdir{Parent: a.Ino, Name: "d"})
	s.fails(&Create{Parent: a.Ino, Name: "g"}, syscall.EDQUOT)
	// A directory moves with its usage; never EXDEV.
	s.ok(&Rename{OldParent: a.Ino, OldName: "f", NewParent: b.Ino, NewName: "f"})
	if st, _ := s.Statfs(b.Ino); st.Bytes != 100 || st.Inodes != 2 {
		t.Fatalf("b after rename %+v", st)
	}
	s.ok(&SetQuota{Ino: b.Ino, MaxBytes: 50})
	s.fails(&Rename{OldParent: b.Ino, OldName: "f", NewParent: b.Ino, NewName: "g", Flags: 0x10}, syscall.EINVAL)
	s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 60}) // shrinking over the limit is fine
	s.fails(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 60, Len: 1, Fid: "1,0100000001"}}}, syscall.EDQUOT)
	s.ok(&SetQuota{Ino: b.Ino, Remove: true})
	if st, _ := s.Statfs(f.Ino); st.Root != RootIno {
		t.Fatalf("after removing quota: %+v", st)
	}
}

// TestQuotaRandom runs random creates, writes, truncates, deletes and
// renames across nested quota roots. Check after every operation verifies
// the usage is exact; an EDQUOT must leave the state byte-for-byte alone.
func TestQuotaRandom(t *testing.T) {
	for seed := uint64(1); seed <= uint64(envInt("CAIRN_FILER_SEEDS", 10)); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runQuota(t, seed, envInt("CAIRN_FILER_OPS", 400))
		})
	}
}

func runQuota(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	s := newTestState(t)
	dirs := []uint64{RootIno}
	for i, lim := range []Quota{{MaxBytes: 300, MaxInodes: 12}, {MaxBytes: 200}, {MaxInodes: 8}} {
		d := s.ok(&Mkdir{Parent: RootIno, Name: fmt.Sprintf("q%d", i)}).Inode
		s.ok(&SetQuota{Ino: d.Ino, MaxBytes: lim.MaxBytes, MaxInodes: lim.MaxInodes})
		dirs = append(dirs, d.Ino)
	}
	inner := s.ok(&Mkdir{Parent: dirs[1], Name: "inner"}).Inode
	s.ok(&SetQuota{Ino: inner.Ino, MaxBytes: 80, MaxInodes: 5})
	dirs = append(dirs, inner.Ino)
	var files []uint64
	edquot, fid := 0, 0
	name := func() string { return fmt.Sprintf("n%d", rng.IntN(6)) }
	for i := range ops {
		var op Op
		switch k := rng.IntN(10); {
		case k < 2:
			op = &Create{Parent: dirs[rng.IntN(len(dirs))], Name: name()}
		case k < 3:
			op = &Mkdir{Parent: dirs[rng.IntN(len(dirs))], Name: name()}
		case k < 5 && len(files) > 0:
			fid++
			op = &CommitSlices{Ino: files[rng.IntN(len(files))], Slices: []Slice{{Off: uint64(rng.IntN(60)), Len: uint64(1 + rng.IntN(30)), Fid: fmt.Sprintf("1,%02x00000001", fid)}}}
		case k < 6 && len(files) > 0:
			op = &SetAttr{Ino: files[rng.IntN(len(files))], Valid: SetSize, Size: uint64(rng.IntN(90))}
		case k < 7:
			op = &Unlink{Parent: dirs[rng.IntN(len(dirs))], Name: name()}
		case k < 8 && len(files) > 0:
			op = &Link{Ino: files[rng.IntN(len(files))], NewParent: dirs[rng.IntN(len(dirs))], NewName: name()}
		default:
			op = &Rename{OldParent: dirs[rng.IntN(len(dirs))], OldName: name(), NewParent: dirs[rng.IntN(len(dirs))], NewName: name()}
		}
		before := s.dump()
		r := s.do(op)
		if err := s.Check(); err != nil {
			t.Fatalf("seed %d op %d %s %+v: %v", seed, i, op.OpType(), op, err)
		}
		switch {
		case r.Errno == syscall.EDQUOT:
			edquot++
			if s.dump() != before {
				t.Fatalf("seed %d op %d %s: EDQUOT changed the state", seed, i, op.OpType())
			}
		case r.Errno == 0 && r.Inode != nil:
			switch {
			case r.Inode.IsRegular() && op.OpType() == "create":
				files = append(files, r.Inode.Ino)
			case r.Inode.IsDir() && op.OpType() == "mkdir":
				dirs = append(dirs, r.Inode.Ino)
			}
		}
		// Drop numbers of inodes that are gone.
		files = liveOnly(s, files)
		dirs = liveOnly(s, dirs)
	}
	for _, d := range dirs {
		st, err := s.Statfs(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.MaxBytes > 0 && st.Bytes > st.MaxBytes || st.MaxInodes > 0 && st.Inodes > st.MaxInodes {
			t.Fatalf("seed %d: quota root %d over its limits: %+v", seed, st.Root, st)
		}
	}
	if edquot == 0 {
		t.Fatalf("seed %d: no operation hit a quota", seed)
	}
}

func liveOnly(s *testState, inos []uint64) []uint64 {
	out := inos[:0]
	for _, ino := range inos {
		if _, err := s.GetAttr(ino); err == nil {
			out = append(out, ino)
		}
	}
	return out
}
