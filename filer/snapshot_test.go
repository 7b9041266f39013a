package filer

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
)

func TestSnapshotReadOnlyAndClone(t *testing.T) {
	s := newTestState(t)
	v := s.ok(&Mkdir{Parent: RootIno, Name: "vol"}).Inode
	f := s.ok(&Create{Parent: v.Ino, Name: "f"}).Inode
	s.ok(&Link{Ino: f.Ino, NewParent: v.Ino, NewName: "g"})
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 8, Fid: "2,0100000001"}}})
	s.ok(&SetXattr{Ino: f.Ino, Name: "user.x", Value: []byte("v")})
	snap := s.ok(&Snapshot{SrcIno: v.Ino, Name: "s1"}).Snapshot
	s.fails(&Snapshot{SrcIno: v.Ino, Name: "s1"}, syscall.EEXIST)
	sf, err := s.Lookup(snap.Root, "f")
	if err != nil || sf.Nlink != 2 || !sf.ReadOnly() {
		t.Fatalf("snapshot file %+v %v", sf, err)
	}
	for _, op := range []Op{
		&Create{Parent: snap.Root, Name: "new"},
		&Unlink{Parent: snap.Root, Name: "f"},
		&SetAttr{Ino: sf.Ino, Valid: SetSize, Size: 0},
		&CommitSlices{Ino: sf.Ino, Slices: []Slice{{Off: 0, Len: 1, Fid: "2,0200000001"}}},
		&SetXattr{Ino: sf.Ino, Name: "user.y"},
		&Rename{OldParent: snap.Root, OldName: "f", NewParent: snap.Root, NewName: "h"},
	} {
		s.fails(op, syscall.EROFS)
	}
	if n, _ := s.RefCount("2,0100000001"); n != 2 {
		t.Fatalf("refcount %d after snapshot", n)
	}
	c := s.ok(&Clone{SnapshotID: snap.ID, DstParent: RootIno, Name: "clone"}).Inode
	cf, _ := s.Lookup(c.Ino, "g")
	if cf.ReadOnly() || cf.Nlink != 2 || cf.Size != 8 {
		t.Fatalf("clone file %+v", cf)
	}
	if v, err := s.GetXattr(cf.Ino, "user.x"); err != nil || string(v) != "v" {
		t.Fatalf("clone xattr %q %v", v, err)
	}
	s.ok(&SetAttr{Ino: cf.Ino, Valid: SetSize, Size: 0})
	s.ok(&DeleteSnapshot{ID: snap.ID})
	s.ok(&Unlink{Parent: v.Ino, Name: "f"})
	s.ok(&Unlink{Parent: v.Ino, Name: "g"})
	if q, _ := s.PendingDeletes(0); len(q) != 1 || q[0] != "2,0100000001" {
		t.Fatalf("queue %v", q)
	}
	if l, _ := s.ListSnapshots(); len(l) != 0 {
		t.Fatalf("snapshots left: %+v", l)
	}
}

// TestSnapshotRefcounts runs a random workload with snapshots, clones and
// snapshot deletion, then deletes everything: the delete queue must then
// hold exactly the needles ever referenced, and no counts remain.
func TestSnapshotRefcounts(t *testing.T) {
	for seed := uint64(1); seed <= uint64(envInt("CAIRN_FILER_SEEDS", 8)); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runSnapshots(t, seed, envInt("CAIRN_FILER_OPS", 300))
		})
	}
}

func runSnapshots(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	s := newTestState(t)
	referenced := map[string]bool{}
	vol := s.ok(&Mkdir{Parent: RootIno, Name: "vol"}).Inode.Ino
	dirs := []uint64{vol}
	var files []uint64
	var snaps []uint64
	n := 0
	inodeCount := func() (n int) {
		_ = s.view(func(tx *txn) error { n = tx.inodes.Stats().KeyN; return nil })
		return n
	}
	for i := range ops {
		var op Op
		k := rng.IntN(20)
		if k >= 13 && k < 18 && inodeCount() > 120 {
			k = 19 // keep copies from growing the tree without bound
		}
		switch {
		case k < 3:
			op = &Create{Parent: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("f", rng.IntN(5))}
		case k < 4:
			op = &Mkdir{Parent: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("d", rng.IntN(3))}
		case k < 9 && len(files) > 0:
			n++
			f := fmt.Sprintf("5,%04x0000beef", n)
			op = &CommitSlices{Ino: files[rng.IntN(len(files))], Slices: []Slice{{Off: uint64(rng.IntN(50)), Len: uint64(1 + rng.IntN(30)), Fid: f}}}
		case k < 11 && len(files) > 0:
			op = &SetAttr{Ino: files[rng.IntN(len(files))], Valid: SetSize, Size: uint64(rng.IntN(60))}
		case k < 12 && len(files) > 0:
			op = &PunchHole{Ino: files[rng.IntN(len(files))], Off: uint64(rng.IntN(40)), Len: uint64(1 + rng.IntN(20))}
		case k < 13:
			op = &Unlink{Parent: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("f", rng.IntN(5)), KeepIfOpen: rng.IntN(2) == 0}
		case k < 15:
			op = &Snapshot{SrcIno: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("s", i)}
		case k < 17 && len(snaps) > 0:
			op = &Clone{SnapshotID: snaps[rng.IntN(len(snaps))], DstParent: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("c", i)}
		case k < 18:
			op = &Clone{SrcIno: dirs[rng.IntN(len(dirs))], DstParent: dirs[rng.IntN(len(dirs))], Name: fmt.Sprint("c", i)}
		case k < 19 && len(snaps) > 0:
			j := rng.IntN(len(snaps))
			op = &DeleteSnapshot{ID: snaps[j]}
			snaps = slices.Delete(snaps, j, j+1)
		default:
			continue
		}
		r := s.do(op)
		if err := s.Check(); err != nil {
			t.Fatalf("seed %d op %d %s %+v: %v", seed, i, op.OpType(), op, err)
		}
		if r.Errno != 0 {
			continue
		}
		switch op := op.(type) {
		case *CommitSlices:
			referenced[op.Slices[0].Fid] = true
		case *Create:
			files = append(files, r.Inode.Ino)
		case *Mkdir:
			dirs = append(dirs, r.Inode.Ino)
		case *Snapshot:
			snaps = append(snaps, r.Snapshot.ID)
		case *Clone:
			if len(dirs) < 40 {
				dirs = append(dirs, r.Inode.Ino)
			}
		}
		files, dirs = liveOnly(s, files), liveOnly(s, dirs)
	}
	// Delete everything.
	for _, id := range snaps {
		s.ok(&DeleteSnapshot{ID: id})
	}
	removeAll(s, RootIno)
	orphans, _ := s.Orphans()
	for _, o := range orphans {
		s.ok(&ReleaseOrphan{Ino: o})
	}
	s.mustCheck()
	q, _ := s.PendingDeletes(0)
	if want := slices.Sorted(maps.Keys(referenced)); !slices.Equal(q, want) {
		t.Fatalf("seed %d: delete queue %d fids, referenced %d", seed, len(q), len(want))
	}
	_ = s.view(func(tx *txn) error {
		if n := tx.refs.Stats().KeyN; n != 0 {
			t.Fatalf("seed %d: %d reference counts left", seed, n)
		}
		return nil
	})
}

// removeAll removes everything below directory dir.
func removeAll(s *testState, dir uint64) {
	ents, err := s.ReadDir(dir, "", 0)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range ents {
		if e.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			removeAll(s, e.Ino)
			s.ok(&Rmdir{Parent: dir, Name: e.Name})
		} else {
			s.ok(&Unlink{Parent: dir, Name: e.Name})
		}
	}
}
