package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/volume"
)

// fsckCluster starts a cluster of its own, so that the needles fsck finds
// are exactly the ones the test made.
func fsckCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 2, Filers: 1, Replication: "001"})
	testutil.WaitFor(t, 60*time.Second, "a write through the filer", func() error {
		return filerPut(c, "/fsck/a", []byte("referenced and present"))
	})
	return c
}

func filerPut(c *testcluster.Cluster, path string, data []byte) error {
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Filers[0].HTTP+path, bytes.NewReader(data))
	resp, err := c.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %d %s", path, resp.StatusCode, body)
	}
	return nil
}

func filerGet(c *testcluster.Cluster, path string) ([]byte, error) {
	resp, err := c.Client.Get("http://" + c.Filers[0].HTTP + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, nil
}

func fsckSh(t *testing.T, c *testcluster.Cluster, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--master", c.Masters[0].HTTP, "--filer", c.Filers[0].HTTP}, args...)
	code := Main(context.Background(), full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func fsckJSON(t *testing.T, c *testcluster.Cluster, command string) (FsckJSON, int) {
	t.Helper()
	out, errs, code := fsckSh(t, c, "-o", "json", "-y", "-c", command)
	// A failed command prints its result, then the error as a second
	// document.
	var f FsckJSON
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&f); err != nil {
		t.Fatalf("%s: not JSON (exit %d, %s): %v\n%s", command, code, errs, err, out)
	}
	return f, code
}

func fids(ns []FsckNeedleJSON) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.Fid)
	}
	return out
}

func TestVolumeFsck(t *testing.T) {
	c := fsckCluster(t)
	if err := filerPut(c, "/fsck/b", []byte("referenced, to be lost")); err != nil {
		t.Fatal(err)
	}
	fc := filer.NewClient(c.FilerAddrs(), nil)
	defer fc.Close()
	in, err := fc.Resolve(context.Background(), "/fsck/b")
	if err != nil || len(in.Slices) != 1 {
		t.Fatalf("resolve /fsck/b: %v %+v", err, in)
	}
	lost := in.Slices[0].Fid
	dir, err := fc.Resolve(context.Background(), "/fsck")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := fc.Apply(context.Background(), &filer.Snapshot{SrcIno: dir.Ino, Name: "before-loss"})
	if err != nil {
		t.Fatal(err)
	}

	// Nothing wrong yet.
	f, code := fsckJSON(t, c, "volume.fsck -grace 0s")
	if code != 0 || len(f.Missing)+len(f.Orphans)+len(f.UnderReplicated) != 0 || f.Referenced < 2 || f.Replicas < 2 {
		t.Fatalf("healthy cluster: exit %d %+v", code, f)
	}

	// An orphan: a needle stored straight on a volume server.
	var orphan string
	testutil.WaitFor(t, 60*time.Second, "a direct upload", func() error {
		a, err := c.Assign("")
		if err != nil {
			return err
		}
		if err := c.Put(a.URL, a.Fid, []byte("nobody references me")); err != nil {
			return err
		}
		orphan = a.Fid
		return nil
	})
	// A missing needle: the data of /fsck/b deleted behind the filer's back.
	locs, err := c.Lookup(strings.Split(lost, ",")[0])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+locs[0]+"/"+lost, nil)
	resp, err := c.Client.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete %s on %s: %v %v", lost, locs[0], err, resp)
	}
	resp.Body.Close()

	// With the default grace period the fresh orphan is not reported yet.
	f, code = fsckJSON(t, c, "volume.fsck")
	if code != 1 || len(f.Orphans) != 0 || f.TooRecent != 1 || fmt.Sprint(fids(f.Missing)) != "["+lost+"]" {
		t.Fatalf("default grace: exit %d %+v", code, f)
	}

	text, errs, code := fsckSh(t, c, "-c", "volume.fsck -grace 0s")
	if code != 1 || !strings.Contains(text, orphan) || !strings.Contains(text, lost) ||
		!strings.Contains(text, "1 missing, 0 under-replicated, 1 orphaned") || !strings.Contains(errs, "data loss") ||
		!strings.Contains(text, "used by /fsck/b") ||
		!strings.Contains(errs, "volume.fsck: [") {
		t.Fatalf("text: exit %d\n%s\n%s", code, text, errs)
	}
	f, code = fsckJSON(t, c, "volume.fsck -grace 0s")
	if code != 1 || fmt.Sprint(fids(f.Missing)) != "["+lost+"]" || fmt.Sprint(fids(f.Orphans)) != "["+orphan+"]" ||
		len(f.Orphans[0].Servers) != 2 || f.Applied || fmt.Sprint(f.Missing[0].Files) != "[/fsck/b snapshot before-loss:/b]" {
		t.Fatalf("json: exit %d %+v", code, f)
	}

	// A needle deleted on one replica only (a tombstone sent straight to
	// it, as a primary would) is under-replicated, not missing.
	if err := filerPut(c, "/fsck/c", []byte("on one replica only")); err != nil {
		t.Fatal(err)
	}
	inC, err := fc.Resolve(context.Background(), "/fsck/c")
	if err != nil || len(inC.Slices) != 1 {
		t.Fatalf("resolve /fsck/c: %v %+v", err, inC)
	}
	half, err := fid.Parse(inC.Slices[0].Fid)
	if err != nil {
		t.Fatal(err)
	}
	locsC, err := c.Lookup(fmt.Sprint(half.Volume))
	if err != nil || len(locsC) != 2 {
		t.Fatalf("lookup volume %d: %v %v", half.Volume, locsC, err)
	}
	pool := rpc.NewPool(nil)
	defer pool.Close()
	conn, err := pool.Conn(locsC[1])
	if err != nil {
		t.Fatal(err)
	}
	tomb := volume.EncodeRecord(&volume.Needle{Key: half.Key, Cookie: half.Cookie, Deleted: true, AppendNs: uint64(time.Now().UnixNano())})
	if _, err := pb.NewVolumeClient(conn).Replicate(context.Background(), &pb.ReplicateRequest{VolumeId: half.Volume, Record: tomb}); err != nil {
		t.Fatal(err)
	}
	f, code = fsckJSON(t, c, "volume.fsck -grace 0s")
	if code != 1 || fmt.Sprint(fids(f.UnderReplicated)) != "["+inC.Slices[0].Fid+"]" || fmt.Sprint(f.UnderReplicated[0].Servers) != "["+locsC[1]+"]" ||
		f.UnderReplicated[0].Reason != "deleted on "+locsC[1] || fmt.Sprint(f.UnderReplicated[0].Files) != "[/fsck/c]" ||
		fmt.Sprint(fids(f.Missing)) != "["+lost+"]" {
		t.Fatalf("under-replicated: exit %d %+v", code, f)
	}
	text, errs, _ = fsckSh(t, c, "-c", "volume.fsck -grace 0s")
	if !strings.Contains(text, "deleted on "+locsC[1]+"; used by /fsck/c") || !strings.Contains(errs, "not on every replica") {
		t.Fatalf("under-replicated, text:\n%s\n%s", text, errs)
	}

	// -apply needs confirmation; without it nothing is deleted.
	_, errs, code = fsckSh(t, c, "-c", "volume.fsck -grace 0s -apply")
	if code != 1 || !strings.Contains(errs, "-y") {
		t.Fatalf("-apply without -y: exit %d %q", code, errs)
	}
	if _, err := c.Get(f.Orphans[0].Servers[0], orphan); err != nil {
		t.Fatalf("orphan gone without confirmation: %v", err)
	}
	f, code = fsckJSON(t, c, "volume.fsck -grace 0s -apply")
	if code != 1 || !f.Applied || fmt.Sprint(f.Deleted) != "["+orphan+"]" || len(f.DeleteErrors) != 0 {
		t.Fatalf("-apply: exit %d %+v", code, f)
	}
	for _, s := range f.Orphans[0].Servers {
		var he *testcluster.HTTPError
		if _, err := c.Get(s, orphan); !errors.As(err, &he) || he.Code != http.StatusNotFound {
			t.Fatalf("orphan %s on %s after -apply: %v", orphan, s, err)
		}
	}
	if b, err := filerGet(c, "/fsck/a"); err != nil || string(b) != "referenced and present" {
		t.Fatalf("/fsck/a after -apply: %q %v", b, err)
	}
	f, code = fsckJSON(t, c, "volume.fsck -grace 0s")
	if code != 1 || len(f.Orphans) != 0 || fmt.Sprint(fids(f.Missing)) != "["+lost+"]" {
		t.Fatalf("after -apply: exit %d %+v", code, f)
	}
	// Restoring the files and dropping the snapshot clear the report.
	if err := filerPut(c, "/fsck/b", []byte("restored")); err != nil {
		t.Fatal(err)
	}
	if err := filerPut(c, "/fsck/c", []byte("rewritten")); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Apply(context.Background(), &filer.DeleteSnapshot{ID: snap.Snapshot.ID}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "a clean fsck", func() error {
		f, code := fsckJSON(t, c, "volume.fsck -grace 0s")
		if code != 0 || len(f.Missing)+len(f.Orphans)+len(f.UnderReplicated) != 0 {
			return fmt.Errorf("exit %d, missing %v, orphans %v, under-replicated %v", code, fids(f.Missing), fids(f.Orphans), fids(f.UnderReplicated))
		}
		return nil
	})
	// Scope: a collection without volumes scans nothing; an unknown
	// volume is an error.
	f, code = fsckJSON(t, c, "volume.fsck -grace 0s -collection nosuch")
	if code != 0 || f.Replicas != 0 || len(f.Missing)+len(f.Orphans) != 0 {
		t.Fatalf("-collection nosuch: exit %d %+v", code, f)
	}
	_, errs, code = fsckSh(t, c, "-c", "volume.fsck -volumeId 999")
	if code != 1 || !strings.Contains(errs, "volume 999 does not exist") {
		t.Fatalf("-volumeId 999: exit %d %q", code, errs)
	}
	_, errs, code = fsckSh(t, c, "-c", "volume.fsck -grace -1s")
	if code != 1 || !strings.Contains(errs, "negative") {
		t.Fatalf("negative grace: exit %d %q", code, errs)
	}
}
