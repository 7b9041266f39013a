package volume

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/internal/fid"
)

func getRange(t *testing.T, url string, id fid.FileID, spec string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+url+"/"+id.String(), nil)
	req.Header.Set("Range", spec)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestRangeReadsOverHTTP runs two real volume servers (replication 001):
// range requests get exactly their bytes with the headers of a whole-needle
// answer, and a range over a block damaged on one replica is repaired from
// the other and served correctly.
func TestRangeReadsOverHTTP(t *testing.T) {
	p := startReplicatedPair(t)
	urlA, urlB, dirB, b := p.urlA, p.urlB, p.dirB, p.b
	data := testPayload(77, 5*blockSize+123)
	size := len(data)
	id := fid.FileID{Volume: 7, Key: 1, Cookie: 0xabc}
	if code, body := put(urlA, id, data); code != 201 {
		t.Fatalf("write: %d %s", code, body)
	}
	etag := fmt.Sprintf(`"%08x"`, crc32c(data))
	for _, tc := range []struct {
		spec   string
		lo, hi int // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=65535-65536", 65535, 65536},
		{"bytes=-10", size - 10, size - 1},
		{"bytes=100000-", 100000, size - 1},
		{"bytes=0-", 0, size - 1},
		{"bytes=300000-99999999", 300000, size - 1},
		{"bytes=131072-196607", 131072, 196607},
	} {
		for _, url := range []string{urlA, urlB} {
			resp, body := getRange(t, url, id, tc.spec)
			cr := fmt.Sprintf("bytes %d-%d/%d", tc.lo, tc.hi, size)
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != cr || !bytes.Equal(body, data[tc.lo:tc.hi+1]) {
				t.Fatalf("%s %q: %d %q, %d bytes; want 206 %q", url, tc.spec, resp.StatusCode, resp.Header.Get("Content-Range"), len(body), cr)
			}
			if resp.Header.Get("ETag") != etag || resp.Header.Get("Content-Length") != fmt.Sprint(tc.hi-tc.lo+1) || resp.Header.Get("Last-Modified") == "" {
				t.Fatalf("%s %q: headers %v", url, tc.spec, resp.Header)
			}
		}
	}
	resp, _ := getRange(t, urlA, id, fmt.Sprintf("bytes=%d-", size))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Fatalf("range past the end: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	resp, body := getRange(t, urlA, id, "bytes=0-1,70000-70001")
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") ||
		!bytes.Contains(body, data[70000:70002]) {
		t.Fatalf("two ranges: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Preconditions go through the whole-needle path, which knows them.
	for _, tc := range []struct {
		header, value string
		code, bytes   int
	}{
		{"If-None-Match", etag, http.StatusNotModified, 0},
		{"If-Range", `"00000000"`, http.StatusOK, size},
		{"If-Range", etag, http.StatusPartialContent, 10},
		{"If-Match", `"00000000"`, http.StatusPreconditionFailed, -1},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+urlA+"/"+id.String(), nil)
		req.Header.Set("Range", "bytes=10-19")
		req.Header.Set(tc.header, tc.value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.bytes >= 0 && len(body) != tc.bytes) {
			t.Fatalf("range with %s: %s: %d, %d bytes; want %d, %d bytes", tc.header, tc.value, resp.StatusCode, len(body), tc.code, tc.bytes)
		}
	}
	if resp, _ := getRange(t, urlA, fid.FileID{Volume: 7, Key: 1, Cookie: 1}, "bytes=0-0"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("range with a wrong cookie: %d, want 404", resp.StatusCode)
	}

	// Damage block 3 of a needle on B (one never read whole, so not in
	// B's cache of verified needles): a range of block 0 still reads from
	// B's disk; a range of block 3 is repaired from A and served right.
	data = testPayload(78, 5*blockSize)
	id = fid.FileID{Volume: 7, Key: 2, Cookie: 0xabc}
	if code, body := put(urlA, id, data); code != 201 {
		t.Fatalf("write: %d %s", code, body)
	}
	flipOnDisk(t, filepath.Join(dirB, "7.dat"), data[3*blockSize:3*blockSize+4096])
	if resp, body := getRange(t, urlB, id, "bytes=0-4095"); resp.StatusCode != 206 || !bytes.Equal(body, data[:4096]) {
		t.Fatalf("range of an intact block: %d", resp.StatusCode)
	}
	vb, _ := b.s.store.Get(7)
	if in := vb.Info(); in.CorruptCount != 0 {
		t.Fatalf("damage found before any read covered it: %+v", in)
	}
	spec := fmt.Sprintf("bytes=%d-%d", 3*blockSize+1000, 3*blockSize+5095)
	if resp, body := getRange(t, urlB, id, spec); resp.StatusCode != 206 || !bytes.Equal(body, data[3*blockSize+1000:3*blockSize+5096]) {
		t.Fatalf("range of the damaged block: %d %q", resp.StatusCode, body[:min(len(body), 200)])
	}
	// The damaged record stays in the file, superseded: a scrub of the
	// index finds nothing only if the repaired copy was appended.
	if bad, err := vb.Verify(bgCtx); err != nil || len(bad) != 0 {
		t.Fatalf("scrub of B after the repair: %v %v", bad, err)
	}
	if n, err := vb.Read(id.Key, id.Cookie); err != nil || !bytes.Equal(n.Data, data) {
		t.Fatalf("B after the repair: %v", err)
	}
}
