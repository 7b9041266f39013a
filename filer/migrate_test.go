package filer

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// testdata/embedded.state was written by the filer before the slices
// bucket (format cairn-filer-1), through State.WriteTo as a Raft snapshot
// holds it: a quota directory with four files written at random offsets
// (overlapping slices, hole slices from punches, truncates, fallocate, a
// truncating commit), a hard link, an xattr, a snapshot and a clone of the
// directory (shared needles) and an orphan.
const embeddedState = "testdata/embedded.state"

// embeddedInodes returns the inodes of an embedded-format state file, with
// the slice lists as stored.
func embeddedInodes(t *testing.T, path string) map[uint64]*Inode {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[uint64]*Inode{}
	err = db.View(func(tx *bolt.Tx) error {
		if f := tx.Bucket(bucketMeta).Get(metaFormat); !bytes.Equal(f, formatEmbedded) || tx.Bucket(bucketSlices) != nil {
			t.Fatalf("%s is of format %q, want the embedded one", path, f)
		}
		return tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
			in := &Inode{}
			if err := decodeInode(v, in); err != nil {
				return err
			}
			out[in.Ino] = in
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// restoreFile restores st from the state file at path through the FSM, as
// a member installing a Raft snapshot does.
func restoreFile(t *testing.T, st *testState, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&FSM{st: st.State}).Restore(f); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreEmbeddedState: a state whose inodes hold their slice lists
// restores to one whose files read the same bytes from their pieces, with
// exact reference counts, the same on every member, and takes commits,
// punches, truncates, unlinks and snapshot deletes afterwards.
func TestRestoreEmbeddedState(t *testing.T) {
	old := embeddedInodes(t, embeddedState)
	overlapping, holes := 0, 0
	for _, in := range old {
		for i, s := range in.Slices {
			if s.Fid == "" {
				holes++
			}
			for _, p := range in.Slices[:i] {
				if p.Off < s.end() && s.Off < p.end() {
					overlapping++
				}
			}
		}
	}
	if overlapping == 0 || holes == 0 {
		t.Fatalf("%s has %d overlapping pairs of slices and %d holes: it does not exercise the conversion", embeddedState, overlapping, holes)
	}

	st := newTestState(t)
	restoreFile(t, st, embeddedState)
	st.mustCheck()
	var files []uint64
	for ino, was := range old {
		in, err := st.GetAttr(ino)
		if err != nil {
			t.Fatalf("inode %d: %v", ino, err)
		}
		if !in.IsRegular() {
			continue
		}
		files = append(files, ino)
		if want := visiblePieces(was.Slices); !slices.Equal(in.Slices, want) {
			t.Fatalf("inode %d: slices %+v, want %+v", ino, in.Slices, want)
		}
		if !slices.Equal(VisibleExtents(in.Slices, 0, in.Size), VisibleExtents(was.Slices, 0, was.Size)) {
			t.Fatalf("inode %d reads differently after the conversion", ino)
		}
		head := *was
		head.Slices = in.Slices
		if !slicesEqualInode(in, &head) {
			t.Fatalf("inode %d: %+v, was %+v", ino, in, was)
		}
	}
	slices.Sort(files)
	if len(files) < 8 {
		t.Fatalf("only %d files in %s", len(files), embeddedState)
	}

	// Every member converts the snapshot the same way.
	other := newTestState(t)
	restoreFile(t, other, embeddedState)
	if st.dump() != other.dump() {
		t.Fatal("two restores of the same snapshot differ")
	}
	// The converted state is a snapshot of the current format.
	var buf bytes.Buffer
	if _, err := st.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	again := newTestState(t)
	if err := again.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if again.dump() != st.dump() {
		t.Fatal("a snapshot of the converted state restores differently")
	}

	// Changes after the conversion, each followed by the checker, against
	// the old lists followed with AppendSlices.
	want := map[uint64][]Slice{}
	for _, ino := range files {
		want[ino] = old[ino].Slices
	}
	for i, ino := range files {
		in, _ := st.GetAttr(ino)
		if in.Snapshot != 0 {
			continue
		}
		sl := []Slice{{Off: uint64(i) * 1000, Len: 5000, Fid: "9,0100000001", NeedleOff: uint64(i)}}
		st.ok(&CommitSlices{Ino: ino, Slices: sl})
		want[ino] = AppendSlices(want[ino], sl)
		st.ok(&PunchHole{Ino: ino, Off: 2000, Len: 700})
		want[ino] = AppendSlices(want[ino], []Slice{{Off: 2000, Len: 700}})
		st.mustCheck()
		got, _ := st.GetAttr(ino)
		if !slices.Equal(VisibleExtents(got.Slices, 0, got.Size), VisibleExtents(want[ino], 0, got.Size)) {
			t.Fatalf("file %d after a write and a punch: %+v, want %+v", ino, got.Slices, visiblePieces(want[ino]))
		}
		st.ok(&SetAttr{Ino: ino, Valid: SetSize, Size: 3000})
		st.mustCheck()
	}
	snaps, err := st.ListSnapshots()
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %+v, %v", snaps, err)
	}
	st.ok(&DeleteSnapshot{ID: snaps[0].ID})
	st.mustCheck()
	orphans, _ := st.Orphans()
	for _, ino := range orphans {
		st.ok(&ReleaseOrphan{Ino: ino})
	}
	for _, dir := range []string{"/d", "/clone"} {
		d, err := st.Resolve(dir)
		if err != nil {
			t.Fatal(err)
		}
		ents, _ := st.ReadDir(d.Ino, "", 0)
		for _, e := range ents {
			st.ok(&Unlink{Parent: d.Ino, Name: e.Name})
		}
	}
	st.ok(&Unlink{Parent: RootIno, Name: "hard"})
	st.mustCheck()
	// Every needle reference is gone: all of them are queued for deletion.
	var refs int
	_ = st.view(func(t *txn) error { refs = t.refs.Stats().KeyN + t.pieces.Stats().KeyN; return nil })
	if refs != 0 {
		t.Fatalf("%d references or pieces left after removing every file", refs)
	}
}

// slicesEqualInode compares two inodes field by field.
func slicesEqualInode(a, b *Inode) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRestoreEmbeddedShadowed: a list stored as an array of objects (the
// earliest form) with a slice no byte of which is visible loses it in the
// conversion, and its needle, referenced nowhere else, is queued for
// deletion in the same step.
func TestRestoreEmbeddedShadowed(t *testing.T) {
	path, db := openEmbeddedCopy(t, "old.state")
	const hidden = "5,0a00000001"
	var ino uint64
	var list []Slice
	err := db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketInodes).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			in := &Inode{}
			if err := decodeInode(v, in); err != nil {
				return err
			}
			if in.IsRegular() && in.Snapshot == 0 && len(in.Slices) > 1 && in.Slices[len(in.Slices)-1].Len > 10 {
				ino, list = in.Ino, in.Slices
				last := list[len(list)-1]
				// Under the last slice, so never visible.
				list = append([]Slice{{Off: last.Off + 1, Len: last.Len - 2, Fid: hidden}}, list...)
				type plain Inode
				arr, err := json.Marshal(struct {
					*plain
					Slices []Slice `json:"slices"`
				}{(*plain)(in), list})
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketInodes).Put(k, arr); err != nil {
					return err
				}
				return tx.Bucket(bucketRefs).Put([]byte(hidden), u64key(1))
			}
		}
		t.Fatal("no file to change")
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	st := newTestState(t)
	restoreFile(t, st, path)
	st.mustCheck()
	if n, _ := st.RefCount(hidden); n != 0 {
		t.Fatalf("hidden needle has %d references", n)
	}
	if q, _ := st.PendingDeletes(0); !slices.Contains(q, hidden) {
		t.Fatalf("hidden needle not queued for deletion: %v", q)
	}
	in, _ := st.GetAttr(ino)
	if !slices.Equal(in.Slices, visiblePieces(list)) {
		t.Fatalf("slices %+v, want %+v", in.Slices, visiblePieces(list))
	}
}

// TestRestoreRefusesBadState: a state file of another format, or of the
// embedded one with a slice list that does not decode, is refused and the
// state is left as it was.
func TestRestoreRefusesBadState(t *testing.T) {
	for name, spoil := range map[string]func(tx *bolt.Tx) error{
		"unknown format": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaFormat, []byte("cairn-filer-9"))
		},
		"corrupt slice list": func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketInodes).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if bytes.Contains(v, []byte(`"slices":"`)) {
					i := bytes.Index(v, []byte(`"slices":"`))
					bad := append(append([]byte{}, v[:i]...), `"slices":"!!"}`...)
					return tx.Bucket(bucketInodes).Put(k, bad)
				}
			}
			t.Fatal("no inode with slices")
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			path, db := openEmbeddedCopy(t, "bad.state")
			if err := db.Update(spoil); err != nil {
				t.Fatal(err)
			}
			db.Close()
			st := newTestState(t)
			st.ok(&Create{Parent: RootIno, Name: "kept", Mode: 0o644})
			before := st.dump()
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := st.Restore(io.Reader(f)); err == nil {
				t.Fatal("the bad state was restored")
			}
			if st.dump() != before {
				t.Fatal("a refused restore changed the state")
			}
		})
	}
}

// openEmbeddedCopy copies the state file the earlier version wrote to a
// file named name in a temporary directory and opens it.
func openEmbeddedCopy(t *testing.T, name string) (string, *bolt.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(embeddedState)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return path, db
}
