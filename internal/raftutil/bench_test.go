package raftutil

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// entrySize is about the size of a filer data commit (one slice).
const entrySize = 300

// BenchmarkStoreLogs appends one entry at a time straight to each log
// store: the durable part of a commit, without raft around it.
func BenchmarkStoreLogs(b *testing.B) {
	data := make([]byte, entrySize)
	for _, kind := range []string{"bolt", "wal"} {
		b.Run(kind, func(b *testing.B) {
			var store raft.LogStore
			switch kind {
			case "bolt":
				s, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				store = s
			case "wal":
				s, err := wal.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				store = s
			}
			b.ResetTimer()
			for i := range b.N {
				l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}
				if err := store.StoreLogs([]*raft.Log{l}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApply measures one command through a single-member group, one
// at a time (what a mount's fsync waits for), on a new data directory (the
// WAL) and on one that already holds a raft.db.
func BenchmarkApply(b *testing.B) {
	for _, kind := range []string{"bolt", "wal"} {
		b.Run(kind, func(b *testing.B) {
			ip := testutil.LoopbackIP(b, testPort, testPort+20000)
			m := &member{cfg: testConfig(b, net.JoinHostPort(ip, strconv.Itoa(testPort)), nil)}
			m.cfg.Dir = b.TempDir()
			if kind == "bolt" {
				s, err := raftboltdb.NewBoltStore(filepath.Join(m.cfg.Dir, "raft.db"))
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			startMember(b, m)
			waitLeader(b, []*member{m})
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, err := m.node.Apply(ctx, cmd(strconv.Itoa(i%64), fmt.Sprintf("%0*d", entrySize, i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
