package filer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The pieces of a data commit (a mount's fsync after a 4 KiB write), each
// without the others: the command codec and the state update. The whole
// path through gRPC and Raft is BenchmarkCommitRPC in server_bench_test.go.

// randomWrite is the CommitSlices of a 4 KiB write at a random page of a
// 64 MiB file, as the mount sends it.
func randomWrite(r *rand.Rand, ino, key uint64) *CommitSlices {
	off := r.Uint64N(16384) * 4096
	return &CommitSlices{Ino: ino, Slices: []Slice{{Off: off, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", key)}},
		Mtime: 1, OmitSlices: true}
}

func BenchmarkCommandCodec(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	c := &Command{ClientID: "0123456789abcdef", Seq: 1, Time: 1, Op: randomWrite(r, 2, 1)}
	for range b.N {
		buf, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeCommand(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStateCommit applies 4 KiB random-write commits straight to the
// state (no Raft) to a file that already has n slices (one per 4 KiB
// page, as a database file written at random pages has), each commit
// overwriting one of those pages, so the file keeps n slices.
func BenchmarkStateCommit(b *testing.B) {
	for _, n := range []int{100, 4000, 50000} {
		b.Run(fmt.Sprintf("slices=%d", n), func(b *testing.B) {
			st := newTestState(b)
			ino := st.ok(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
			pages := make([]Slice, n)
			for k := range pages {
				pages[k] = Slice{Off: uint64(k) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", k+1)}
			}
			st.ok(&CommitSlices{Ino: ino, Slices: pages, OmitSlices: true})
			r := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for i := range b.N {
				st.now += 1000
				op := &CommitSlices{Ino: ino, Mtime: 1, OmitSlices: true, Slices: []Slice{{
					Off: r.Uint64N(uint64(n)) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", n+i+1)}}}
				res, err := st.Apply(uint64(i+1), &Command{ClientID: "0123456789abcdef", Seq: uint64(i + 1), Time: st.now, Op: op})
				if err != nil || res.Errno != 0 {
					b.Fatal(err, res)
				}
			}
		})
	}
}
