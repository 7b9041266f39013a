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
	benchCommits(b, func(ino, off, key uint64) *filer.CommitSlices {
		return &filer.CommitSlices{Ino: ino, Slices: []filer.Slice{{Off: off, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", key)}}, OmitSlices: true}
	})
}

// BenchmarkCommitInlineRPC is BenchmarkCommitRPC with the 4 KiB written
// carried in the commit (inline data), as the mount sends an fsync of a
// small write.
func BenchmarkCommitInlineRPC(b *testing.B) {
	page := make([]byte, 4096)
	benchCommits(b, func(ino, off, _ uint64) *filer.CommitSlices {
		return &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: off, Data: page}}, OmitSlices: true}
	})
}

// benchCommits creates a file and times the commits op makes of 4 KiB at
// random page offsets (key: a number unique to each commit), one at a
// time, after 2,000 untimed ones.
func benchCommits(b *testing.B, op func(ino, off, key uint64) *filer.CommitSlices) {
	n := startNode(b, 0)
	ctx := context.Background()
	res, err := n.client.Apply(ctx, &filer.Create{Parent: filer.RootIno, Name: "bench", Mode: 0o644})
	if err != nil {
		b.Fatal(err)
	}
	ino := res.Inode.Ino
	r := rand.New(rand.NewPCG(1, 2))
	commit := func(key uint64) {
		if _, err := n.client.Apply(ctx, op(ino, r.Uint64N(16384)*4096, key)); err != nil {
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
