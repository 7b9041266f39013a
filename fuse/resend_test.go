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
	if got := c.readThroughFiler(t, filerPath(filepath.Join(dir, "x1"))); string(got) != "2" {
		t.Fatalf("x1 holds %q after one exchange", got)
	}
}
