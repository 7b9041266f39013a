package mountinfo

import (
	"os"
	"testing"
)

func TestParse(t *testing.T) {
	in := []byte(`22 1 0:21 / /proc rw,nosuid - proc proc rw
36 35 0:52 / /tmp/a\040b/staging rw,nosuid,nodev,relatime shared:1 - fuse.cairn cairn rw,user_id=0,group_id=0
37 22 0:52 /sub\011dir /tmp/t rw,relatime shared:2 master:1 - fuse.cairn my\040src rw
38 22 0:52 / /tmp/end\040 ro,relatime - fuse.cairn cairn rw
39 22 0:53 / /tmp/short rw - tmpfs
40 22 0:54 / /tmp/nosep rw tmpfs tmpfs rw

`)
	got := Parse(in)
	want := []Entry{
		{Dev: "0:21", Root: "/", Point: "/proc", Opts: "rw,nosuid", FSType: "proc", Source: "proc"},
		{Dev: "0:52", Root: "/", Point: "/tmp/a b/staging", Opts: "rw,nosuid,nodev,relatime", FSType: "fuse.cairn", Source: "cairn"},
		{Dev: "0:52", Root: "/sub\tdir", Point: "/tmp/t", Opts: "rw,relatime", FSType: "fuse.cairn", Source: "my src"},
		{Dev: "0:52", Root: "/", Point: "/tmp/end ", Opts: "ro,relatime", FSType: "fuse.cairn", Source: "cairn"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":      "/plain",
		`/a\040b`:     "/a b",
		`/a\134b`:     `/a\b`,
		`/a\012`:      "/a\n",
		`\040`:        " ",
		`/a\04`:       `/a\04`,
		`/a\089`:      `/a\089`,
		`/a\400`:      `/a\400`,
		`/a\\040`:     `/a\ `,
		`/trailing\\`: `/trailing\\`,
		`/a\040\040b`: "/a  b",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRead(t *testing.T) {
	if _, err := os.Stat(Path); err != nil {
		t.Skipf("no %s: %v", Path, err)
	}
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	root := false
	for _, m := range ms {
		if m.Point == "/" {
			root = true
		}
	}
	if !root {
		t.Fatalf("no mount at / among %d entries", len(ms))
	}
}
