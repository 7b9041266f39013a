package filer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

// BenchmarkCommitRPC is a mount's data commit end to end: the client's
// gRPC call, the leader's Raft commit (log append and fsync) and the state
// update, one at a time, as a writer that fsyncs after every 4 KiB write
// waits for it. The needle ids are made up (a commit does not read them).
func BenchmarkCommitRPC(b *testing.B) {
	n := startNode(b, 0)
	ctx := context.Background()
	res, err := n.client.Apply(ctx, &filer.Create{Parent: filer.RootIno, Name: "bench", Mode: 0o644})
	if err != nil {
		b.Fatal(err)
	}
	ino := res.Inode.Ino
	r := rand.New(rand.NewPCG(1, 2))
	commit := func(key uint64) {
		off := r.Uint64N(16384) * 4096
		op := &filer.CommitSlices{Ino: ino, Slices: []filer.Slice{{Off: off, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", key)}}, OmitSlices: true}
		if _, err := n.client.Apply(ctx, op); err != nil {
			b.Fatal(err)
		}
	}
	for k := range 2000 {
		commit(uint64(k + 1))
	}
	b.ResetTimer()
	for i := range b.N {
		commit(uint64(10000 + i))
	}
}

// BenchmarkCommitInlineRPC is BenchmarkCommitRPC with the 4 KiB written
// carried in the commit (inline data), as the mount sends an fsync of a
// small write.
func BenchmarkCommitInlineRPC(b *testing.B) {
	n := startNode(b, 0)
	ctx := context.Background()
	res, err := n.client.Apply(ctx, &filer.Create{Parent: filer.RootIno, Name: "bench", Mode: 0o644})
	if err != nil {
		b.Fatal(err)
	}
	ino := res.Inode.Ino
	r := rand.New(rand.NewPCG(1, 2))
	page := make([]byte, 4096)
	commit := func() {
		off := r.Uint64N(16384) * 4096
		op := &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: off, Data: page}}, OmitSlices: true}
		if _, err := n.client.Apply(ctx, op); err != nil {
			b.Fatal(err)
		}
	}
	for range 2000 {
		commit()
	}
	b.ResetTimer()
	for range b.N {
		commit()
	}
}
