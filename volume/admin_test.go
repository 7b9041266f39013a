package volume

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// flipOnDisk flips a byte in the middle of content inside the data file.
func flipOnDisk(t *testing.T, path string, content []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(raw, content)
	if off < 0 {
		t.Fatalf("content not found in %s", path)
	}
	raw[off+len(content)/2] ^= 0xff
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(raw[off+len(content)/2:off+len(content)/2+1], int64(off+len(content)/2)); err != nil {
		t.Fatal(err)
	}
}

// TestScrub corrupts needles on disk on one of two replicas and checks that
// Scrub finds them, repairs them from the other replica only when asked,
// and reports a needle corrupt on both replicas as lost.
func TestScrub(t *testing.T) {
	ipA := testutil.LoopbackIP(t, 8080, 18080)
	ipB := testutil.LoopbackIP(t, 8080, 18080)
	urlA, urlB := net.JoinHostPort(ipA, "8080"), net.JoinHostPort(ipB, "8080")
	master := startFakeMaster(t, []string{urlA, urlB})
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, ipA, dirA, master)
	b := startServer(t, ipB, dirB, master)
	for _, s := range []*Server{a.s, b.s} {
		if _, err := s.store.Allocate(7, "", "001"); err != nil {
			t.Fatal(err)
		}
		s.markBehind(7, "test start")
	}
	testutil.WaitFor(t, 20*time.Second, "volume 7 in sync on both", func() error {
		for _, s := range []*Server{a.s, b.s} {
			if why, behind := s.behind(7); behind {
				return fmt.Errorf("%s: %s", s.URL(), why)
			}
		}
		return nil
	})
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 200+i) }
	ids := make([]fid.FileID, 3)
	for i := range ids {
		ids[i] = fid.FileID{Volume: 7, Key: uint64(i + 1), Cookie: 0x100 + uint32(i)}
		if code, body := put(urlA, ids[i], payload(i)); code != 201 {
			t.Fatalf("write %v: %d %s", ids[i], code, body)
		}
	}
	dat := fileBase("", 7) + extData
	flipOnDisk(t, filepath.Join(dirB, dat), payload(0))
	flipOnDisk(t, filepath.Join(dirB, dat), payload(2))
	flipOnDisk(t, filepath.Join(dirA, dat), payload(2)) // lost on both

	ctx := context.Background()
	gb := &grpcService{s: b.s}
	got, err := gb.Scrub(ctx, &pb.ScrubRequest{VolumeId: 7})
	if err != nil {
		t.Fatal(err)
	}
	if got.Checked != 3 || got.Corrupt != 2 || got.Repaired != 0 {
		t.Fatalf("scrub without repair: %+v, want checked 3, corrupt 2, repaired 0", got)
	}
	got, err = gb.Scrub(ctx, &pb.ScrubRequest{VolumeId: 7, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Corrupt != 2 || got.Repaired != 1 || len(got.Errors) != 1 {
		t.Fatalf("scrub with repair: %+v, want corrupt 2, repaired 1 and one error for the needle lost everywhere", got)
	}
	vb, _ := b.s.store.Get(7)
	if n, err := vb.Read(ids[0].Key, ids[0].Cookie); err != nil || !bytes.Equal(n.Data, payload(0)) {
		t.Fatalf("repaired needle: %v", err)
	}
	got, err = gb.Scrub(ctx, &pb.ScrubRequest{VolumeId: 7, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Corrupt != 1 || got.Repaired != 0 {
		t.Fatalf("second scrub: %+v, want only the needle lost everywhere", got)
	}
	if _, err := gb.Scrub(ctx, &pb.ScrubRequest{VolumeId: 99}); err == nil {
		t.Fatal("scrub of a volume the server does not hold succeeded")
	}
}
