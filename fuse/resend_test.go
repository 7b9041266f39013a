package fuse

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
)

// TestResentRemovalsAlreadyDone: an unlink, rmdir or rename the kernel
// sends again after a killed mount process had carried it out finds its
// name gone; it succeeds (a rename only if its new name is there). The
// same requests sent once keep their ENOENT, and so do creations that
// find their name taken. A resent rename exchange is refused with EIO:
// done twice it would swap the names back.
func TestResentRemovalsAlreadyDone(t *testing.T) {
	c, dir := shared(t)
	fs := sharedMount.fs
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	node := st.Ino
	mustWrite(t, filepath.Join(dir, "f"), []byte("x"))
	mustWrite(t, filepath.Join(dir, "r1"), []byte("y"))
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The killed process's work: done, the replies lost.
	for _, err := range []error{
		os.Remove(filepath.Join(dir, "f")),
		os.Remove(filepath.Join(dir, "d")),
		os.Rename(filepath.Join(dir, "r1"), filepath.Join(dir, "r2")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "x1"), []byte("1"))
	mustWrite(t, filepath.Join(dir, "x2"), []byte("2"))
	hdr := func(resent bool) gofuse.InHeader {
		h := gofuse.InHeader{NodeId: node, Unique: 1000}
		if resent {
			h.Unique |= uniqueResend
		}
		return h
	}
	for _, resent := range []bool{false, true} {
		want := gofuse.ENOENT
		if resent {
			want = gofuse.OK
		}
		h := hdr(resent)
		if got := fs.Unlink(nil, &h, "f"); got != want {
			t.Errorf("unlink of a removed name, resent %v: %v, want %v", resent, got, want)
		}
		if got := fs.Rmdir(nil, &h, "d"); got != want {
			t.Errorf("rmdir of a removed name, resent %v: %v, want %v", resent, got, want)
		}
		if got := fs.Rename(nil, &gofuse.RenameIn{InHeader: h, Newdir: node}, "r1", "r2"); got != want {
			t.Errorf("rename whose new name is there, resent %v: %v, want %v", resent, got, want)
		}
		if got := fs.Rename(nil, &gofuse.RenameIn{InHeader: h, Newdir: node}, "nothing", "nowhere"); got != gofuse.ENOENT {
			t.Errorf("rename of a name never there, resent %v: %v, want ENOENT", resent, got)
		}
		wantX := gofuse.OK
		if resent {
			wantX = gofuse.EIO
		}
		if got := fs.Rename(nil, &gofuse.RenameIn{InHeader: h, Newdir: node, Flags: filer.RenameExchange}, "x1", "x2"); got != wantX {
			t.Errorf("rename exchange, resent %v: %v, want %v", resent, got, wantX)
		}
		var out gofuse.EntryOut
		if got := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: h, Mode: 0o755}, "r2", &out); got != gofuse.Status(syscall.EEXIST) {
			t.Errorf("mkdir over a taken name, resent %v: %v, want EEXIST", resent, got)
		}
	}
	if got := mustRead(t, filepath.Join(dir, "r2")); string(got) != "y" {
		t.Fatalf("r2 reads %q", got)
	}
	// One exchange (the one sent once) took effect. (Read through the
	// filer: the calls above bypassed the kernel, whose entries still
	// name the old inodes.)
	if got := c.readThroughFiler(t, "/"+filepath.Base(dir)+"/x1"); string(got) != "2" {
		t.Fatalf("x1 holds %q after one exchange", got)
	}
}

// TestResentRequestsAnsweredAsFirst: on a mount that can be resumed after
// a kill (it keeps a record of unstored writes), every namespace change
// runs under a filer session of its FUSE connection, so a request the
// kernel sends again after the kill gets the answer its first run had:
// creations their inode, a rename exchange success (swapped once), an
// xattr created or removed success. A request sent once that finds the
// name taken keeps its EEXIST. A resent request whose session slot a
// later request used first, or whose first run was under another id,
// falls back to the rules of TestResentRemovalsAlreadyDone.
func TestResentRequestsAnsweredAsFirst(t *testing.T) {
	c, _ := shared(t)
	m := c.mount(t, Config{Root: "/", PendingFile: filepath.Join(t.TempDir(), "pending", "m")}, t.TempDir())
	t.Cleanup(func() { _ = m.Unmount() })
	dir, err := os.MkdirTemp(m.fs.cfg.Dir, "t-")
	if err != nil {
		t.Fatal(err)
	}
	fs := m.fs
	if fs.pending == nil {
		t.Fatal("the mount keeps no record of unstored writes")
	}
	ino := func(name string) uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	mustWrite(t, filepath.Join(dir, "x1"), []byte("1"))
	mustWrite(t, filepath.Join(dir, "x2"), []byte("2"))
	mustWrite(t, filepath.Join(dir, "f"), []byte("f"))
	mustWrite(t, filepath.Join(dir, "gone"), []byte("g"))
	if err := os.Mkdir(filepath.Join(dir, "rd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(filepath.Join(dir, "f"), "user.old", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	node, f := ino("."), ino("f")

	// Far above the kernel's own request ids, each in a slot of its own.
	const base = 1 << 40
	hdr := func(i uint64, resent bool) gofuse.InHeader {
		h := gofuse.InHeader{NodeId: node, Unique: base + 2*i}
		if resent {
			h.Unique |= uniqueResend
		}
		return h
	}
	// Each request, run by the killed process and then sent again: the
	// node id of what it made (0: none).
	reqs := []struct {
		name string
		run  func(h gofuse.InHeader) (uint64, gofuse.Status)
	}{
		{"mkdir", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			var out gofuse.EntryOut
			st := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: h, Mode: 0o755}, "m", &out)
			return out.NodeId, st
		}},
		{"mknod", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			var out gofuse.EntryOut
			st := fs.Mknod(nil, &gofuse.MknodIn{InHeader: h, Mode: syscall.S_IFREG | 0o644}, "n", &out)
			return out.NodeId, st
		}},
		{"create O_EXCL", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			var out gofuse.CreateOut
			st := fs.Create(nil, &gofuse.CreateIn{InHeader: h, Flags: syscall.O_CREAT | syscall.O_EXCL | syscall.O_RDWR, Mode: 0o644}, "lock", &out)
			if st.Ok() {
				fs.Release(nil, &gofuse.ReleaseIn{InHeader: gofuse.InHeader{NodeId: out.NodeId}, Fh: out.Fh})
			}
			return out.NodeId, st
		}},
		{"symlink", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			var out gofuse.EntryOut
			st := fs.Symlink(nil, &h, "x1", "s", &out)
			return out.NodeId, st
		}},
		{"link", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			var out gofuse.EntryOut
			st := fs.Link(nil, &gofuse.LinkIn{InHeader: h, Oldnodeid: f}, "l", &out)
			return out.NodeId, st
		}},
		{"exchange", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			return 0, fs.Rename(nil, &gofuse.RenameIn{InHeader: h, Newdir: node, Flags: filer.RenameExchange}, "x1", "x2")
		}},
		{"setxattr create", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			h.NodeId = f
			return 0, fs.SetXAttr(nil, &gofuse.SetXAttrIn{InHeader: h, Flags: filer.XattrCreate}, "user.new", []byte("n"))
		}},
		{"removexattr", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			h.NodeId = f
			return 0, fs.RemoveXAttr(nil, &h, "user.old")
		}},
		{"unlink", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			return 0, fs.Unlink(nil, &h, "gone")
		}},
		{"rmdir", func(h gofuse.InHeader) (uint64, gofuse.Status) {
			return 0, fs.Rmdir(nil, &h, "rd")
		}},
	}
	first := make([]uint64, len(reqs))
	for i, r := range reqs {
		id, st := r.run(hdr(uint64(i), false))
		if !st.Ok() {
			t.Fatalf("%s: %v", r.name, st)
		}
		first[i] = id
	}
	// The process that resumes the connection reads the id from the
	// record (Resume; openPending with resume).
	fs.pending.carried.Store(true)
	for i, r := range reqs {
		id, st := r.run(hdr(uint64(i), true))
		if !st.Ok() {
			t.Errorf("%s sent again: %v, want the first answer (OK)", r.name, st)
		}
		if id != first[i] {
			t.Errorf("%s sent again answers node %d, the first run made %d", r.name, id, first[i])
		}
	}
	// Sent once, a creation over the name keeps its EEXIST.
	var out gofuse.EntryOut
	if st := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: hdr(100, false), Mode: 0o755}, "m", &out); st != gofuse.Status(syscall.EEXIST) {
		t.Errorf("a new mkdir of a taken name: %v, want EEXIST", st)
	}
	// Swapped once: x1 holds what x2 held.
	if got := c.readThroughFiler(t, "/"+filepath.Base(dir)+"/x1"); string(got) != "2" {
		t.Errorf("x1 holds %q after an exchange and its resend, want \"2\"", got)
	}

	// A later request of the same slot ran first: the resend cannot be
	// told from a stale command, and gets the rules without sessions.
	if st := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: hdr(200, false), Mode: 0o755}, "m2", &out); !st.Ok() {
		t.Fatal(st)
	}
	if st := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: hdr(200+reqSlots/2, false), Mode: 0o755}, "m3", &out); !st.Ok() {
		t.Fatal(st)
	}
	if st := fs.Mkdir(nil, &gofuse.MkdirIn{InHeader: hdr(200, true), Mode: 0o755}, "m2", &out); st != gofuse.Status(syscall.EEXIST) {
		t.Errorf("resent mkdir whose slot a later request used: %v, want EEXIST", st)
	}
	if st := fs.Rename(nil, &gofuse.RenameIn{InHeader: hdr(300, false), Newdir: node, Flags: filer.RenameExchange}, "x1", "x2"); !st.Ok() {
		t.Fatal(st)
	}
	if st := fs.Rename(nil, &gofuse.RenameIn{InHeader: hdr(300+reqSlots/2, false), Newdir: node, Flags: filer.RenameExchange}, "x1", "x2"); !st.Ok() {
		t.Fatal(st)
	}
	if st := fs.Rename(nil, &gofuse.RenameIn{InHeader: hdr(300, true), Newdir: node, Flags: filer.RenameExchange}, "x1", "x2"); st != gofuse.EIO {
		t.Errorf("resent exchange whose slot a later request used: %v, want EIO", st)
	}
	// The previous process ran under another id (an earlier version).
	fs.pending.carried.Store(false)
	if st := fs.Rename(nil, &gofuse.RenameIn{InHeader: hdr(400, true), Newdir: node, Flags: filer.RenameExchange}, "x1", "x2"); st != gofuse.EIO {
		t.Errorf("resent exchange without the previous process's id: %v, want EIO", st)
	}
	if got := c.readThroughFiler(t, "/"+filepath.Base(dir)+"/x1"); string(got) != "2" {
		t.Errorf("x1 holds %q after three exchanges, want \"2\"", got)
	}
}
