package filer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// readFile returns the bytes of file ino as a reader of its pieces sees
// them: inline data from the state, needles as their fid's name repeated
// (the test's needles are not stored anywhere), holes as zeros.
func readFile(t *testing.T, s *testState, ino uint64) []byte {
	t.Helper()
	in, err := s.GetAttr(ino)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, in.Size)
	for _, e := range PieceExtents(in.Slices, 0, in.Size) {
		switch {
		case e.Fid == "":
		case isInlineFid(e.Fid):
			b, err := s.ReadInline(e.Fid, e.NeedleOff, e.Len)
			if err != nil || uint64(len(b)) != e.Len {
				t.Fatalf("inline %s at %d: %d bytes, %v", e.Fid, e.NeedleOff, len(b), err)
			}
			copy(out[e.Off:], b)
		default:
			for i := range e.Len {
				out[e.Off+i] = 'n'
			}
		}
	}
	return out
}

func inlineCount(t *testing.T, s *testState) uint64 {
	t.Helper()
	n, _, err := s.InlineUsage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInlineCommit: a commit carrying bytes stores them, names them with
// inline fids returned in order, and the file reads them back, split and
// overwritten like any slice. The data goes away with its last reference,
// without passing through the needle delete queue.
func TestInlineCommit(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	r := s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 4, Fid: "3,01637037d6"}},
		Inline: []InlineData{{Off: 2, Data: []byte("hello")}, {Off: 10, Data: []byte("XY")}}})
	if len(r.Fids) != 2 || !isInlineFid(r.Fids[0]) || !isInlineFid(r.Fids[1]) || r.Fids[0] == r.Fids[1] {
		t.Fatalf("fids %v", r.Fids)
	}
	if r.Inode.Size != 12 {
		t.Fatalf("size %d", r.Inode.Size)
	}
	if got := readFile(t, s, f.Ino); string(got) != "nnhello\x00\x00\x00XY" {
		t.Fatalf("read %q", got)
	}
	// A write into the middle of the first blob splits it: two pieces,
	// two references.
	s.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 4, Data: []byte("L")}}})
	if n, _ := s.RefCount(r.Fids[0]); n != 2 {
		t.Fatalf("split blob has %d references", n)
	}
	if got := readFile(t, s, f.Ino); string(got) != "nnheLlo\x00\x00\x00XY" {
		t.Fatalf("read %q", got)
	}
	// Overwriting every visible byte of a blob drops it.
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 10, Len: 2, Fid: "3,02637037d6"}}})
	if _, err := s.ReadInline(r.Fids[1], 0, 2); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("overwritten blob still readable: %v", err)
	}
	s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 0})
	if n := inlineCount(t, s); n != 0 {
		t.Fatalf("%d blobs left after truncating to 0", n)
	}
	q, _ := s.PendingDeletes(0)
	for _, f := range q {
		if isInlineFid(f) {
			t.Fatalf("inline data on the needle delete queue: %v", q)
		}
	}
}

// TestInlineShared: a clone and a snapshot share a file's inline data,
// which outlives the original until the last copy is gone.
func TestInlineShared(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	fids := s.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 0, Data: []byte("shared")}}}).Fids
	c := s.ok(&Clone{SrcIno: f.Ino, DstParent: RootIno, Name: "c"}).Inode
	snap := s.ok(&Snapshot{SrcIno: RootIno, Name: "s"}).Snapshot
	s.ok(&Unlink{Parent: RootIno, Name: "f"})
	if got := readFile(t, s, c.Ino); string(got) != "shared" {
		t.Fatalf("clone reads %q", got)
	}
	s.ok(&Unlink{Parent: RootIno, Name: "c"})
	if n, _ := s.RefCount(fids[0]); n != 2 { // the snapshot's f and c
		t.Fatalf("blob held by the snapshot has %d references", n)
	}
	s.ok(&DeleteSnapshot{ID: snap.ID})
	if n := inlineCount(t, s); n != 0 {
		t.Fatalf("%d blobs left after the last copy went", n)
	}
}

// TestInlineRefused: bad inline writes and references to inline data that
// does not exist are refused and change nothing.
func TestInlineRefused(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	r := s.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 0, Data: []byte("abcd")}}})
	fid, gen := r.Fids[0], r.Inode.Generation
	before := s.dump()
	big := make([]InlineData, 0, MaxInlineSlices+1)
	for i := range MaxInlineSlices + 1 {
		big = append(big, InlineData{Off: uint64(i), Data: []byte("x")})
	}
	for name, c := range map[string]struct {
		op   Op
		want syscall.Errno
	}{
		"too many bytes":   {&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Data: make([]byte, MaxInlineBytes/2)}, {Off: 1 << 20, Data: make([]byte, MaxInlineBytes/2+1)}}}, syscall.E2BIG},
		"too many pieces":  {&CommitSlices{Ino: f.Ino, Inline: big}, syscall.E2BIG},
		"empty":            {&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 3}}}, syscall.EINVAL},
		"past the max":     {&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: MaxFileSize - 1, Data: []byte("ab")}}}, syscall.EFBIG},
		"made-up fid":      {&CommitSlices{Ino: f.Ino, Slices: []Slice{{Len: 1, Fid: "0,0500000000"}}}, syscall.EINVAL},
		"other spelling":   {&CommitSlices{Ino: f.Ino, Slices: []Slice{{Len: 1, Fid: "/" + fid}}}, syscall.EINVAL},
		"past its end":     {&CommitSlices{Ino: f.Ino, Slices: []Slice{{Len: 2, Fid: fid, NeedleOff: 3}}}, syscall.EINVAL},
		"replace past end": {&ReplaceSlices{Ino: f.Ino, ExpectGeneration: gen, NewSlices: []Slice{{Len: 4, Fid: fid, NeedleOff: 1}}}, syscall.EINVAL},
		"leased":           {&BeginUpload{Fids: []string{"0,0600000000"}, Expires: 1}, syscall.EINVAL},
		"directory":        {&CommitSlices{Ino: RootIno, Inline: []InlineData{{Data: []byte("x")}}}, syscall.EISDIR},
	} {
		if r := s.do(c.op); r.Errno != c.want {
			t.Errorf("%s: errno %v, want %v", name, r.Errno, c.want)
		}
		if s.dump() != before {
			t.Fatalf("%s: a refused command changed the state", name)
		}
	}
	// A reference to existing inline data (as a compaction keeps it) is
	// accepted.
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 8, Len: 2, Fid: fid, NeedleOff: 2}}})
	if got := readFile(t, s, f.Ino); string(got) != "abcd\x00\x00\x00\x00cd" {
		t.Fatalf("read %q", got)
	}
}

// TestInlineReplay: a repeated commit (the client retrying after a lost
// answer) stores nothing again and answers the same fids.
func TestInlineReplay(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	c := &Command{ClientID: "m-1", Seq: 1, Time: 5, Op: &CommitSlices{Ino: f.Ino, Inline: []InlineData{{Data: []byte("once")}}, OmitSlices: true}}
	r1, err := s.Apply(10, c)
	if err != nil || r1.Errno != 0 {
		t.Fatal(r1, err)
	}
	r2, err := s.Apply(11, c)
	if err != nil || r2.Errno != 0 {
		t.Fatal(r2, err)
	}
	if len(r2.Fids) != 1 || r2.Fids[0] != r1.Fids[0] || inlineCount(t, s) != 1 {
		t.Fatalf("replay: fids %v then %v, %d blobs", r1.Fids, r2.Fids, inlineCount(t, s))
	}
}

// TestInlineChecksum: inline data that no longer matches its CRC32C is an
// error, never bytes handed to a reader, and Check reports it.
func TestInlineChecksum(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	id := s.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Data: []byte("good")}}}).Fids[0]
	err := rawUpdate(s.State, func(tx *bolt.Tx) error {
		v := append([]byte{}, tx.Bucket(bucketInline).Get([]byte(id))...)
		v[5] ^= 1
		return tx.Bucket(bucketInline).Put([]byte(id), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadInline(id, 0, 4); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check: %v", err)
	}
	// Leave a state that passes the check at the end of the test.
	s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 0})
}

// TestRestoreStateWithoutInline: a snapshot written before inline data
// (format cairn-filer-2, no inline bucket) restores, gets the bucket, and
// takes inline commits.
func TestRestoreStateWithoutInline(t *testing.T) {
	old := newTestState(t)
	f := old.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	old.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 8, Fid: "3,01637037d6"}}})
	path := editedStateFile(t, old, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketInline); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, formatNoInline)
	})
	st := newTestState(t)
	restoreFile(t, st, path)
	st.mustCheck()
	st.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 2, Data: []byte("in")}}})
	if got := readFile(t, st, f.Ino); !bytes.Equal(got, []byte("nninnnnn")) {
		t.Fatalf("read %q", got)
	}
}

// TestInlineUsageKept: the count and bytes of inline data are kept by the
// commands that store and drop blobs (refusals leave them alone), agree
// with a scan in every check, and are computed again when a state written
// by a version that did not keep them is restored (missing, or stale after
// a downgrade).
func TestInlineUsageKept(t *testing.T) {
	s := newTestState(t)
	usage := func(st *testState) [2]uint64 {
		t.Helper()
		n, b, err := st.InlineUsage()
		if err != nil {
			t.Fatal(err)
		}
		return [2]uint64{n, b}
	}
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	s.ok(&CommitSlices{Ino: f.Ino, Inline: []InlineData{{Off: 0, Data: []byte("hello")}, {Off: 10, Data: []byte("XY")}}})
	if u := usage(s); u != [2]uint64{2, 7} {
		t.Fatalf("after storing 5 and 2 bytes: %v", u)
	}
	s.fails(&CommitSlices{Ino: f.Ino + 100, Inline: []InlineData{{Off: 0, Data: []byte("nope")}}}, syscall.ENOENT)
	if u := usage(s); u != [2]uint64{2, 7} {
		t.Fatalf("a refused commit changed the usage: %v", u)
	}
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 10, Len: 2, Fid: "3,02637037d6"}}})
	if u := usage(s); u != [2]uint64{1, 5} {
		t.Fatalf("after the 2-byte blob was overwritten: %v", u)
	}
	s.mustCheck()

	// A state with a wrong count and no bytes gets both from a scan.
	path := editedStateFile(t, s, func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if err := m.Put(metaInlineCount, u64key(7)); err != nil {
			return err
		}
		return m.Delete(metaInlineBytes)
	})
	st := newTestState(t)
	restoreFile(t, st, path)
	if u := usage(st); u != [2]uint64{1, 5} {
		t.Fatalf("restored with wrong kept figures: %v", u)
	}
	st.mustCheck()
}

// editedStateFile writes st's state to a file, changes it there with edit
// (into what another version would have left) and returns its path.
func editedStateFile(t *testing.T, st *testState, edit func(tx *bolt.Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edited.state")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.WriteTo(out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(edit)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}
