package filer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/master"
	"github.com/cairn-storage/cairn/volume"
)

// node runs a master, a volume server and a filer in this process.
type node struct {
	filer  *filer.Server
	url    string // filer HTTP base URL
	client *filer.Client
}

func startNode(t testing.TB, chunk int) *node {
	t.Helper()
	return startNodeCfg(t, filer.Config{ChunkSize: chunk, CompactInterval: 200 * time.Millisecond})
}

// startNodeCfg is startNode with the filer's configuration; its address,
// directory and masters are filled in.
func startNodeCfg(t testing.TB, fcfg filer.Config) *node {
	t.Helper()
	ip := testutil.LoopbackIP(t, 9333, 19333, 29333, 8080, 18080, 8888, 18888, 28888)
	ctx, cancel := context.WithCancel(context.Background())
	maddr := net.JoinHostPort(ip, "9333")
	m, err := master.New(master.Config{Dir: t.TempDir(), IP: ip, Port: 9333, Pulse: 200 * time.Millisecond, VolumeSizeLimit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.NewServer(volume.Config{Dir: t.TempDir(), IP: ip, Port: 8080, Masters: []string{maddr}, Pulse: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fcfg.Dir, fcfg.IP, fcfg.Port, fcfg.Masters = t.TempDir(), ip, 8888, []string{maddr}
	f, err := filer.NewServer(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	for _, run := range []func(context.Context) error{m.Run, v.Run, f.Run} {
		go func() { _ = run(ctx); done <- struct{}{} }()
	}
	n := &node{filer: f, url: "http://" + f.URL(), client: filer.NewClient([]string{f.URL()}, nil)}
	t.Cleanup(func() {
		n.client.Close()
		cancel()
		for range 3 {
			<-done
		}
	})
	testutil.WaitFor(t, 30*time.Second, "filer and volume server ready", func() error {
		if err := f.Ready(); err != nil {
			return err
		}
		code, body := n.do(t, http.MethodPut, "/ready-probe", "", []byte("x"))
		if code != http.StatusCreated {
			return fmt.Errorf("probe write: %d %s", code, body)
		}
		return nil
	})
	return n
}

func (n *node) do(t testing.TB, method, path, ctype string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPAPI exercises the SeaweedFS-compatible HTTP API: multi-needle
// writes, reads with Range, listings, moves, deletes and bad input.
func TestHTTPAPI(t *testing.T) {
	n := startNode(t, 1000) // small needles: a 3500-byte file spans four
	content := make([]byte, 3500)
	for i := range content {
		content[i] = byte(i * 7)
	}
	if code, body := n.do(t, http.MethodPut, "/a/b/c.bin", "", content); code != 201 {
		t.Fatalf("put: %d %s", code, body)
	}
	in, err := n.client.Resolve(context.Background(), "/a/b/c.bin")
	if err != nil || in.Size != 3500 || len(in.Slices) != 4 {
		t.Fatalf("file after put: %+v %v (want 3500 bytes in 4 slices)", in, err)
	}
	if code, body := n.do(t, http.MethodGet, "/a/b/c.bin", "", nil); code != 200 || body != string(content) {
		t.Fatalf("get: %d, %d bytes, equal=%v", code, len(body), body == string(content))
	}
	req, _ := http.NewRequest(http.MethodGet, n.url+"/a/b/c.bin", nil)
	req.Header.Set("Range", "bytes=990-2010")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || !bytes.Equal(got, content[990:2011]) {
		t.Fatalf("range across needles: %d, equal=%v", resp.StatusCode, bytes.Equal(got, content[990:2011]))
	}

	// Multipart upload replaces the content atomically.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("file", "c.bin")
	fw.Write([]byte("short"))
	mw.Close()
	if code, body := n.do(t, http.MethodPost, "/a/b/c.bin", mw.FormDataContentType(), mp.Bytes()); code != 201 {
		t.Fatalf("multipart: %d %s", code, body)
	}
	if code, body := n.do(t, http.MethodGet, "/a/b/c.bin", "", nil); code != 200 || body != "short" {
		t.Fatalf("after overwrite: %d %q", code, body)
	}

	// Listing as JSON.
	req, _ = http.NewRequest(http.MethodGet, n.url+"/a/b/", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Path    string
		Entries []struct {
			FullPath string
			FileSize uint64
		}
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Entries) != 1 || list.Entries[0].FullPath != "/a/b/c.bin" || list.Entries[0].FileSize != 5 {
		t.Fatalf("listing: %+v", list)
	}
	if code, body := n.do(t, http.MethodGet, "/a/b/", "", nil); code != 200 || !strings.Contains(body, `<a href="c.bin">`) {
		t.Fatalf("html listing: %d %s", code, body)
	}

	// Move, then delete recursively.
	if code, body := n.do(t, http.MethodPost, "/a/moved.bin?mv.from=/a/b/c.bin", "", nil); code != 204 {
		t.Fatalf("move: %d %s", code, body)
	}
	if code, _ := n.do(t, http.MethodGet, "/a/b/c.bin", "", nil); code != 404 {
		t.Fatalf("old name after move: %d", code)
	}
	if code, body := n.do(t, http.MethodGet, "/a/moved.bin", "", nil); code != 200 || body != "short" {
		t.Fatalf("new name after move: %d %q", code, body)
	}
	if code, _ := n.do(t, http.MethodDelete, "/a", "", nil); code != 409 {
		t.Fatalf("non-recursive delete of a non-empty directory: %d, want 409", code)
	}
	if code, body := n.do(t, http.MethodDelete, "/a?recursive=true", "", nil); code != 204 {
		t.Fatalf("recursive delete: %d %s", code, body)
	}
	if code, _ := n.do(t, http.MethodGet, "/a/", "", nil); code != 404 {
		t.Fatalf("deleted directory still listed: %d", code)
	}

	// Bad input: clear errors, nothing changed.
	for _, p := range []string{"/x/../etc", "/x//y", "/" + strings.Repeat("n", 300)} {
		code, body := n.do(t, http.MethodPut, p, "", []byte("x"))
		if code != 400 || !strings.Contains(body, "error") {
			t.Errorf("PUT %q: %d %s, want 400 with an error", p, code, body)
		}
	}
	if code, _ := n.do(t, http.MethodDelete, "/", "", nil); code != 400 {
		t.Errorf("DELETE /: %d, want 400", code)
	}
	ents, err := n.client.ReadDir(context.Background(), filer.RootIno, "", 100)
	if err != nil || len(ents) != 1 || ents[0].Name != "ready-probe" {
		t.Fatalf("root after bad requests: %+v %v", ents, err)
	}
}

// TestQuotaThroughAPI: a write that would exceed a subtree's quota fails
// with EDQUOT (507 over HTTP) and changes nothing; usage stays exact.
func TestQuotaThroughAPI(t *testing.T) {
	n := startNode(t, 0)
	ctx := context.Background()
	res, err := n.client.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "vol", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	vol := res.Inode.Ino
	if _, err := n.client.Apply(ctx, &filer.SetQuota{Ino: vol, MaxBytes: 10000, MaxInodes: 5}); err != nil {
		t.Fatal(err)
	}
	if code, body := n.do(t, http.MethodPut, "/vol/a", "", make([]byte, 6000)); code != 201 {
		t.Fatalf("write within quota: %d %s", code, body)
	}
	code, body := n.do(t, http.MethodPut, "/vol/b", "", make([]byte, 6000))
	if code != 507 || !strings.Contains(body, "quota") {
		t.Fatalf("write over quota: %d %s, want 507 naming the quota", code, body)
	}
	sf, err := n.client.Statfs(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if sf.Bytes != 6000 || sf.MaxBytes != 10000 {
		t.Fatalf("statfs after refused write: %+v (want 6000 of 10000 bytes)", sf)
	}
	_, err = n.client.Apply(ctx, &filer.Create{Parent: vol, Name: "c", Mode: 0o644})
	_, err2 := n.client.Apply(ctx, &filer.Create{Parent: vol, Name: "d", Mode: 0o644})
	_, err3 := n.client.Apply(ctx, &filer.Create{Parent: vol, Name: "e", Mode: 0o644})
	if err != nil || err2 != nil || !errors.Is(err3, syscall.EDQUOT) {
		t.Fatalf("inode quota: %v %v %v (want the 6th inode refused with EDQUOT)", err, err2, err3)
	}
	if code, _ := n.do(t, http.MethodDelete, "/vol/a", "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	sf, _ = n.client.Statfs(ctx, vol)
	if sf.Bytes != 0 || sf.Inodes != 4 {
		t.Fatalf("usage after delete: %+v (want 0 bytes, 4 inodes)", sf)
	}
}

// TestCompaction: a file overwritten in many small pieces is rewritten into
// a few fresh needles by the leader, with the same bytes, and the needles it
// no longer references are deleted.
func TestCompaction(t *testing.T) {
	n := startNode(t, 4096)
	ctx := context.Background()
	data := n.dataClient()
	ino := createFile(t, n, "db")
	want := make([]byte, 10000)
	for i := range 60 { // overlapping 500-byte page writes, and one hole left unwritten
		off := (i * 151) % 9000
		if off >= 3000 && off < 3500 {
			continue
		}
		page := bytes.Repeat([]byte{byte(i + 1)}, 500)
		commitPage(t, n, data, ino, off, page, 10000)
		copy(want[off:], page)
	}
	before, _ := n.client.GetAttr(ctx, ino)
	if len(before.Slices) < 32 {
		t.Fatalf("setup left only %d slices", len(before.Slices))
	}
	waitCompacted(t, n, ino, "/db", want)
	testutil.WaitFor(t, 30*time.Second, "replaced needles deleted", func() error {
		var pending []string
		if err := n.client.Read(ctx, &pb.FilerReadRequest{Op: "pending_deletes"}, &pending); err != nil {
			return err
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d needles queued", len(pending))
		}
		return nil
	})
	for _, sl := range before.Slices {
		if _, err := data.Read(ctx, sl.Fid, 0, 1); err == nil {
			t.Fatalf("needle %s of the old slice list still readable after compaction and GC", sl.Fid)
		}
	}
}

// TestCompactionSkipsScatteredWrites: a sparse file written at scattered
// offsets (a database file filled at random pages) is left alone, since a
// rewrite would give it as many slices as it has; a fragmented dense file
// made after it is compacted, so the compactor did look at both.
func TestCompactionSkipsScatteredWrites(t *testing.T) {
	n := startNode(t, 4096)
	ctx := context.Background()
	data := n.dataClient()
	write := func(ino uint64, off int, b []byte, size uint64) {
		t.Helper()
		commitPage(t, n, data, ino, off, b, size)
	}
	sparse := createFile(t, n, "sparse")
	for i := range 50 { // 10 bytes every 20: 50 separate runs of data
		write(sparse, i*20, bytes.Repeat([]byte{byte(i + 1)}, 10), 0)
	}
	before, err := n.client.GetAttr(ctx, sparse)
	if err != nil {
		t.Fatal(err)
	}
	dense := createFile(t, n, "dense")
	for i := range 60 {
		write(dense, (i*151)%9000, bytes.Repeat([]byte{byte(i + 1)}, 500), 10000)
	}
	testutil.WaitFor(t, 60*time.Second, "the dense file to be compacted", func() error {
		in, err := n.client.GetAttr(ctx, dense)
		if err != nil {
			return err
		}
		if len(in.Slices) > 4 {
			return fmt.Errorf("%d slices", len(in.Slices))
		}
		return nil
	})
	after, err := n.client.GetAttr(ctx, sparse)
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || len(after.Slices) != len(before.Slices) {
		t.Fatalf("sparse file rewritten: generation %d -> %d, %d -> %d slices", before.Generation, after.Generation, len(before.Slices), len(after.Slices))
	}
}

// TestCompactionWaitsForQuiet: a fragmented file that keeps being written
// is not compacted (each pass would read and rewrite all of it, only to
// have the swap refused after the next write); once it stops changing, it
// is.
func TestCompactionWaitsForQuiet(t *testing.T) {
	n := startNodeCfg(t, filer.Config{ChunkSize: 4096, CompactInterval: 100 * time.Millisecond, CompactIdle: 5 * time.Second})
	ctx := context.Background()
	data := n.dataClient()
	ino := createFile(t, n, "db")
	want := make([]byte, 10000)
	write := func(i int) {
		t.Helper()
		off := (i * 151) % 9500
		page := bytes.Repeat([]byte{byte(i + 1)}, 500)
		commitPage(t, n, data, ino, off, page, 10000)
		copy(want[off:], page)
	}
	for i := range 60 {
		write(i)
	}
	// Keep writing for 30 compaction passes; the file never goes quiet
	// for the 5 s it needs.
	for i := 60; i < 90; i++ {
		write(i)
		time.Sleep(100 * time.Millisecond) // the pace of the writer, not a wait for a condition
		in, err := n.client.GetAttr(ctx, ino)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Slices) <= 4 {
			t.Fatalf("a file written %d times in the last few seconds was compacted to %d slices", i, len(in.Slices))
		}
	}
	waitCompacted(t, n, ino, "/db", want)
}

// waitCompacted waits until file ino (at path) has been compacted to a few
// slices, and checks that it still reads as want.
func waitCompacted(t *testing.T, n *node, ino uint64, path string, want []byte) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "the file to be compacted", func() error {
		in, err := n.client.GetAttr(context.Background(), ino)
		if err != nil {
			return err
		}
		if len(in.Slices) > 4 {
			return fmt.Errorf("%d slices", len(in.Slices))
		}
		return nil
	})
	if code, body := n.do(t, http.MethodGet, path, "", nil); code != 200 || body != string(want) {
		t.Fatalf("content after compaction differs (HTTP %d, %d bytes)", code, len(body))
	}
}

// dataClient stores and reads needles on node n's volume servers, for
// tests that write file data themselves.
func (n *node) dataClient() *filer.DataClient {
	return &filer.DataClient{Assign: n.client.Assign, Lookup: n.client.LookupVolume, HTTP: http.DefaultClient, Scheme: "http"}
}

// createFile creates the regular file name in node n's root directory and
// returns its inode.
func createFile(t *testing.T, n *node, name string) uint64 {
	t.Helper()
	res, err := n.client.Apply(context.Background(), &filer.Create{Parent: filer.RootIno, Name: name, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	return res.Inode.Ino
}

// commitPage stores b as a needle and commits it at off of file ino, with
// size as the file's size (0: unchanged or grown to cover b).
func commitPage(t *testing.T, n *node, data *filer.DataClient, ino uint64, off int, b []byte, size uint64) {
	t.Helper()
	ctx := context.Background()
	fid, err := data.Write(ctx, b, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Slices: []filer.Slice{{Off: uint64(off), Len: uint64(len(b)), Fid: fid}}, Size: size}); err != nil {
		t.Fatal(err)
	}
}

// TestInlineDataMovesToNeedles: small writes committed with their bytes
// read back through the filer's API and a client's ReadInline; once the
// file is quiet the compactor moves the inline bytes into needles (the
// file's other pieces are kept as they are) and the filer drops its copy.
func TestInlineDataMovesToNeedles(t *testing.T) {
	n := startNodeCfg(t, filer.Config{CompactInterval: 100 * time.Millisecond, CompactIdle: time.Second})
	ctx := context.Background()
	data := n.dataClient()
	ino := createFile(t, n, "wal")
	base := bytes.Repeat([]byte("b"), 20000)
	commitPage(t, n, data, ino, 0, base, 0)
	want := append([]byte{}, base...)
	var fids []string
	for i := range 10 {
		page := bytes.Repeat([]byte{byte('0' + i)}, 700)
		off := uint64(i * 1900)
		r, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: off, Data: page}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Fids) != 1 || !fid.IsInline(r.Fids[0]) {
			t.Fatalf("commit %d: fids %v", i, r.Fids)
		}
		fids = append(fids, r.Fids[0])
		copy(want[off:], page)
	}
	if b, err := n.client.ReadInline(ctx, fids[3], 100, 50); err != nil || !bytes.Equal(b, bytes.Repeat([]byte("3"), 50)) {
		t.Fatalf("ReadInline: %q %v", b, err)
	}
	if code, body := n.do(t, http.MethodGet, "/wal", "", nil); code != 200 || body != string(want) {
		t.Fatalf("content with inline data differs (HTTP %d, %d bytes)", code, len(body))
	}
	gapFid := func() string {
		t.Helper()
		in, err := n.client.GetAttr(ctx, ino)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range in.Slices {
			if s.Off == 700 {
				return s.Fid
			}
		}
		t.Fatalf("no piece at 700: %+v", in.Slices)
		return ""
	}
	gap := gapFid()
	if _, body := n.do(t, http.MethodGet, "/metrics", "", nil); !strings.Contains(body, "\ncairn_filer_inline_bytes 7000\n") {
		t.Fatal("/metrics does not count the 7000 bytes of inline data held")
	}
	testutil.WaitFor(t, 60*time.Second, "the inline data to move to needles", func() error {
		var refs []string
		if err := n.client.Read(ctx, &pb.FilerReadRequest{Op: "referenced"}, &refs); err != nil {
			return err
		}
		for _, f := range refs {
			if fid.IsInline(f) {
				return fmt.Errorf("still referenced: %s", f)
			}
		}
		return nil
	})
	if _, err := n.client.ReadInline(ctx, fids[3], 0, 10); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("inline data still held after the move: %v", err)
	}
	if code, body := n.do(t, http.MethodGet, "/wal", "", nil); code != 200 || body != string(want) {
		t.Fatalf("content after the move differs (HTTP %d, %d bytes)", code, len(body))
	}
	if _, body := n.do(t, http.MethodGet, "/metrics", "", nil); !strings.Contains(body, "\ncairn_filer_inline_bytes 0\n") {
		t.Fatal("/metrics still counts inline data after the move")
	}
	if got := gapFid(); got != gap {
		t.Fatalf("the needle between the inline writes was rewritten too: %s, then %s", gap, got)
	}
	// The ten scattered pages went into one needle, not one each.
	in, err := n.client.GetAttr(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]bool{}
	for _, s := range in.Slices {
		if s.Off%1900 == 0 && s.Len == 700 {
			moved[s.Fid] = true
		}
	}
	if len(moved) != 1 {
		t.Fatalf("the inline pages moved to %d needles, want 1: %+v", len(moved), in.Slices)
	}
}
