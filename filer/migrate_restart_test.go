package filer_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestFilerStartsFromEmbeddedSnapshot: a filer process whose latest Raft
// snapshot holds a state of the embedded format (written by the earlier
// version, testdata/embedded.state) starts from it, answers each file with
// the pieces of its old list and takes writes.
func TestFilerStartsFromEmbeddedSnapshot(t *testing.T) {
	db, err := bolt.Open("testdata/embedded.state", 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	byIno := map[uint64]*filer.Inode{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("inodes")).ForEach(func(_, v []byte) error {
			in := &filer.Inode{}
			if err := json.Unmarshal(v, in); err != nil {
				return err
			}
			byIno[in.Ino] = in
			return nil
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	fp := c.Filers[0]
	c.WaitFilerLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool := rpc.NewPool(nil)
	defer pool.Close()
	conn, err := pool.Conn(fp.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pb.NewFilerClient(conn).FilerStatus(ctx, &pb.FilerStatusRequest{})
	if err != nil || len(st.Peers) != 1 {
		t.Fatalf("filer status %+v, %v", st, err)
	}
	fp.Stop()

	// The snapshot the earlier version would have taken at the last index.
	store, err := raft.NewFileSnapshotStore(fp.Dir+"/raft/snapshots", 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter,
		ID: raft.ServerID(st.Peers[0].Id), Address: raft.ServerAddress(st.Peers[0].Address)}}}
	_, trans := raft.NewInmemTransport("") // only encodes the legacy peer list
	sink, err := store.Create(raft.SnapshotVersionMax, st.AppliedIndex, st.Term, cfg, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile("testdata/embedded.state")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(state); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}

	fp.Start(t)
	c.WaitFilerLeader(t)
	fc := filer.NewClient(c.FilerAddrs(), nil)
	defer fc.Close()
	var f0 *filer.Inode
	testutil.WaitFor(t, 60*time.Second, "the restarted filer answers /d/f0", func() error {
		var err error
		f0, err = fc.Resolve(ctx, "/d/f0")
		return err
	})
	if !strings.Contains(fp.Log(), "moved the slice lists of a restored state's files") {
		t.Fatalf("the filer log does not tell of the conversion:\n%s", fp.Log())
	}
	for _, p := range []string{"/d/f0", "/d/f1", "/d/f2", "/clone/f0", "/clone/f1", "/hard"} {
		in, err := fc.Resolve(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		was := byIno[in.Ino]
		if was == nil || was.Size != in.Size || was.Generation != in.Generation {
			t.Fatalf("%s: inode %+v, the old state had %+v", p, in, was)
		}
		if want := filer.AppendSlices(nil, was.Slices); !slices.Equal(in.Slices, want) || len(want) == 0 {
			t.Fatalf("%s: slices %+v, want the pieces of the old list %+v", p, in.Slices, want)
		}
	}
	add := []filer.Slice{{Off: 100, Len: 4000, Fid: "9,0100000001"}}
	res, err := fc.Apply(ctx, &filer.CommitSlices{Ino: f0.Ino, Slices: add})
	if err != nil || res.Errno != 0 {
		t.Fatalf("commit after the conversion: %+v, %v", res, err)
	}
	if want := filer.AppendSlices(f0.Slices, add); !slices.Equal(res.Inode.Slices, want) {
		t.Fatalf("after a commit: %+v, want %+v", res.Inode.Slices, want)
	}
	if n, err := fc.Apply(ctx, &filer.SetAttr{Ino: f0.Ino, Valid: filer.SetSize, Size: 50}); err != nil || n.Errno != 0 ||
		len(n.Inode.Slices) == 0 || n.Inode.Slices[len(n.Inode.Slices)-1].Off+n.Inode.Slices[len(n.Inode.Slices)-1].Len > 50 {
		t.Fatalf("truncate after the conversion: %+v, %v", n, err)
	}
}
