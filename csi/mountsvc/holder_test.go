package mountsvc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/fuse"
)

// TestHolder: the holder refuses what is not a /dev/fuse descriptor with
// a record, hands held descriptors back, drops them when told and when
// their connection ends (a /dev/fuse descriptor never mounted polls as
// POLLERR, like one whose mount is gone).
func TestHolder(t *testing.T) {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	defer dev.Close()
	dir := t.TempDir()
	sock := filepath.Join(dir, "h.sock")
	h := NewHolder(nil)
	ln, err := listenPacket(sock)
	if err != nil {
		t.Fatal(err)
	}
	go h.serve(ln)
	defer ln.Close()
	if _, err := listenPacket(sock); err == nil || !strings.Contains(err.Error(), "another fuse holder") {
		t.Fatalf("a second holder on a live socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := NewHolderClient(sock)
	rec := HeldMount{Mount: Mount{VolumeID: "v", Root: "/csi/v", Dir: "/staging/v"}, Init: []byte("init request")}

	notFuse, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer notFuse.Close()
	if err := c.Hold(ctx, rec, notFuse); err == nil || !strings.Contains(err.Error(), "not /dev/fuse") {
		t.Fatalf("holding /dev/null: %v, want refused", err)
	}
	bad := rec
	bad.Init = nil
	if err := c.Hold(ctx, bad, dev); err == nil {
		t.Fatal("a record without its INIT request was accepted")
	}
	bad = rec
	bad.Dir = "relative"
	if err := c.Hold(ctx, bad, dev); err == nil {
		t.Fatal("a relative mount point was accepted")
	}
	if got := h.Held(); len(got) != 0 {
		t.Fatalf("refused requests left %v held", got)
	}

	if err := c.Hold(ctx, rec, dev); err != nil {
		t.Fatal(err)
	}
	if was, err := c.Mark(ctx, rec.Dir, true); err != nil || !was {
		t.Fatalf("Mark = %v, %v", was, err)
	}
	held, err := c.List(ctx)
	if err != nil || len(held) != 1 {
		t.Fatalf("List = %v, %v; want one", held, err)
	}
	got := held[0]
	if got.Mount != rec.Mount || string(got.Init) != "init request" || !got.Clean || !fuse.IsDevice(int(got.Dev.Fd())) {
		t.Fatalf("List returned %+v", got)
	}
	got.Dev.Close()
	if was, err := c.Drop(ctx, "/staging/other"); err != nil || was {
		t.Fatalf("Drop of an unknown dir = %v, %v", was, err)
	}
	if was, err := c.Drop(ctx, rec.Dir); err != nil || !was {
		t.Fatalf("Drop = %v, %v", was, err)
	}
	if held, err := c.List(ctx); err != nil || len(held) != 0 {
		t.Fatalf("after Drop, List = %v, %v", held, err)
	}

	// A connection that ended is dropped by the watcher.
	if err := c.Hold(ctx, rec, dev); err != nil {
		t.Fatal(err)
	}
	h.check()
	if got := h.Held(); len(got) != 0 {
		t.Fatalf("a /dev/fuse descriptor without a live connection is still held: %v", got)
	}
}
