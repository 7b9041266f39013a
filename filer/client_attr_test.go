package filer

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// oldFiler answers reads as a filer from before the attribute-only reads:
// getattr and lookup with the slice list, EINVAL for any other operation.
type oldFiler struct {
	pb.UnimplementedFilerServer
	mu  sync.Mutex
	ops []string
}

func (f *oldFiler) Read(_ context.Context, req *pb.FilerReadRequest) (*pb.FilerReadResponse, error) {
	f.mu.Lock()
	f.ops = append(f.ops, req.Op)
	f.mu.Unlock()
	switch req.Op {
	case "getattr", "lookup":
		b, _ := json.Marshal(&Inode{Ino: 7, Mode: syscall.S_IFREG | 0o644, Size: 4096, Generation: 3,
			Slices: []Slice{{Off: 0, Len: 4096, Fid: "3,0100000001"}}})
		return &pb.FilerReadResponse{Json: b}, nil
	}
	return &pb.FilerReadResponse{Errno: int32(syscall.EINVAL), Error: "unknown read operation"}, nil
}

// A client asking an older filer for attributes gets them from the full
// reads, without the slice list, and stops asking for the new reads.
func TestAttrFromOlderFiler(t *testing.T) {
	ip := testutil.LoopbackIP(t, 8888, 18888)
	httpAddr := net.JoinHostPort(ip, "8888")
	gaddr, _ := rpc.GRPCAddr(httpAddr)
	ln, err := net.Listen("tcp", gaddr)
	if err != nil {
		t.Fatal(err)
	}
	old := &oldFiler{}
	gs := rpc.NewServer(nil)
	pb.RegisterFilerServer(gs, old)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	c := NewClient([]string{httpAddr}, nil)
	defer c.Close()
	ctx := context.Background()
	for range 2 {
		in, err := c.Attr(ctx, 7)
		if err != nil || in.Ino != 7 || in.Size != 4096 || in.Generation != 3 || in.Slices != nil {
			t.Fatalf("Attr from an older filer: %+v, %v", in, err)
		}
		in, err = c.LookupAttr(ctx, RootIno, "f")
		if err != nil || in.Ino != 7 || in.Slices != nil {
			t.Fatalf("LookupAttr from an older filer: %+v, %v", in, err)
		}
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	want := []string{"attr", "getattr", "lookup", "getattr", "lookup"}
	if len(old.ops) != len(want) {
		t.Fatalf("reads sent: %v, want %v", old.ops, want)
	}
	for i := range want {
		if old.ops[i] != want[i] {
			t.Fatalf("reads sent: %v, want %v", old.ops, want)
		}
	}
}
