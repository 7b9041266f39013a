package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// namespace lists every path of a filer's state with its type, size and
// symlink target, for before/after comparisons.
func namespace(t *testing.T, st *filer.State) []string {
	t.Helper()
	var out []string
	var walk func(ino uint64, p string)
	walk = func(ino uint64, p string) {
		ents, err := st.ReadDir(ino, "", 0)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		for _, e := range ents {
			in, err := st.GetAttr(e.Ino)
			if err != nil {
				t.Fatalf("getattr %s/%s: %v", p, e.Name, err)
			}
			out = append(out, fmt.Sprintf("%q mode=%o size=%d target=%q", p+"/"+e.Name, in.Mode, in.Size, in.Target))
			if in.IsDir() {
				walk(e.Ino, p+"/"+e.Name)
			}
		}
	}
	walk(filer.RootIno, "")
	return out
}

// TestTraversalFilerAPIs sends traversal attempts the existing
// TestFilerHTTPModes does not: backslashes, overlong paths made of short
// components, encoded NUL and slashes, double encoding through the HTTP
// API; bad names in gRPC Lookup, Link, Rename (old and new name), Unlink
// and Rmdir. Each is refused or stays inside the API root, and the whole
// namespace outside what the test made itself is unchanged.
func TestTraversalFilerAPIs(t *testing.T) {
	ip, fs := apiFilers(t, filer.Config{HTTPRoot: "/sub", HTTPBind: "self:7777"})
	rooted := fs[0]
	api := ip + ":7777"
	testutil.WaitFor(t, 30*time.Second, "a write through the rooted API", func() error {
		if code, body := rawDo(t, api, http.MethodPut, "/a.txt", []byte("inside")); code != http.StatusCreated {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	fc := filer.NewClient([]string{rooted.URL()}, nil)
	defer fc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outside, err := fc.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "outside", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Apply(ctx, &filer.Create{Parent: outside.Inode.Ino, Name: "secret", Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	before := namespace(t, rooted.State())

	long := strings.Repeat("/"+strings.Repeat("d", 200), 21) // 4221 bytes, each component valid
	refused := []string{
		long, long + "/x", "/%00", "/a%00b", "/..%2f..%2foutside%2fsecret", "/%2e%2e%2foutside",
		"/%2e%2e", "/.%2E", "/x/%2E%2e/..", "/" + strings.Repeat("n", 256) + "/x",
		"/outside/../../outside/secret", "/./outside",
	}
	for _, target := range refused {
		for _, m := range []string{http.MethodPut, http.MethodGet, http.MethodDelete, http.MethodPost} {
			if code, body := rawDo(t, api, m, target, []byte("x")); code < 400 {
				t.Errorf("%s %.60s: %d %.200s, want refused", m, target, code, body)
			}
		}
	}
	// Names that are odd but legal on Linux stay names inside the root:
	// a backslash is not a separator, and "%2e%2e" decoded once is the
	// literal name "%2e%2e", not "..".
	literal := map[string]string{
		"/..%5c..%5coutside%5csecret": `..\..\outside\secret`,
		`/..\escape`:                  `..\escape`,
		"/%252e%252e":                 "%2e%2e",
		"/...":                        "...",
	}
	for target, name := range literal {
		if code, body := rawDo(t, api, http.MethodPut, target, []byte("literal")); code != http.StatusCreated {
			t.Errorf("PUT %s: %d %s, want 201 (a literal name)", target, code, body)
			continue
		}
		if _, err := rooted.State().Resolve("/sub/" + name); err != nil {
			t.Errorf("PUT %s did not create /sub/%s: %v", target, name, err)
		}
		if code, body := rawDo(t, api, http.MethodDelete, target, nil); code >= 300 {
			t.Errorf("DELETE %s: %d %s", target, code, body)
		}
	}

	sub, err := fc.Resolve(ctx, "/sub")
	if err != nil {
		t.Fatal(err)
	}
	a, err := fc.Lookup(ctx, sub.Ino, "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"..", ".", "", "a/b", "../outside", "/outside", "x\x00y", "a.txt\x00", strings.Repeat("n", 256)}
	for _, name := range bad {
		if _, err := fc.Lookup(ctx, sub.Ino, name); !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("gRPC Lookup(%.20q): %v, want EINVAL or ENAMETOOLONG", name, err)
		}
		ops := map[string]filer.Op{
			"link":       &filer.Link{Ino: a.Ino, NewParent: sub.Ino, NewName: name},
			"rename old": &filer.Rename{OldParent: sub.Ino, OldName: name, NewParent: outside.Inode.Ino, NewName: "moved"},
			"rename new": &filer.Rename{OldParent: sub.Ino, OldName: "a.txt", NewParent: sub.Ino, NewName: name},
			"unlink":     &filer.Unlink{Parent: sub.Ino, Name: name},
			"rmdir":      &filer.Rmdir{Parent: sub.Ino, Name: name},
			"create":     &filer.Create{Parent: sub.Ino, Name: name, Mode: 0o644},
			"mkdir":      &filer.Mkdir{Parent: sub.Ino, Name: name, Mode: 0o755},
			"symlink":    &filer.Symlink{Parent: sub.Ino, Name: name, Target: "../outside/secret"},
		}
		for what, op := range ops {
			if _, err := fc.Apply(ctx, op); !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Errorf("gRPC %s with name %.20q: %v, want EINVAL or ENAMETOOLONG", what, name, err)
			}
		}
	}
	for _, p := range []string{"/sub/..", "/sub/../outside/secret", "/sub/%2e%2e", "sub", "/sub/", "//sub", "/sub\x00/a.txt", long} {
		if in, err := fc.Resolve(ctx, p); err == nil && p != "/sub/" {
			t.Errorf("gRPC Resolve(%.40q) = inode %d, want refused", p, in.Ino)
		}
	}
	if after := namespace(t, rooted.State()); !slices.Equal(before, after) {
		t.Errorf("namespace changed by refused requests:\nbefore %q\nafter  %q", before, after)
	}
}

// TestTraversalMount: a mount of the filer subtree /a never reaches /b.
// ".." at the mount root is the host's parent directory (the kernel
// resolves it; the filer never sees it); symlink targets, absolute or
// relative, are resolved by the kernel in the reader's own file system, so
// a link to "/b/secret" or "../b/secret" made inside /a names host paths,
// never the filer's /b; renames and hard links out of the mount, even into
// another mount of the same filer, fail with EXDEV. Nothing in /b changes.
func TestTraversalMount(t *testing.T) {
	needApps(t, "fuse3", "fusermount3")
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	whole := c.StartMount(t, "/")
	secret := []byte("secret in /b")
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(whole.Point, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeSync(t, filepath.Join(whole.Point, "b", "secret"), secret)
	writeSync(t, filepath.Join(whole.Point, "a", "in.txt"), []byte("inside"))
	// A link inside /a made through the whole namespace, pointing up.
	if err := os.Symlink("../b", filepath.Join(whole.Point, "a", "up")); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitFilerLeader(t)
	listB := func() []string {
		var l struct{ Entries []struct{ FullPath string } }
		if err := c.GetJSON(c.URL(leader.HTTP, "/b/?pretty=y"), &l); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l.Entries {
			out = append(out, e.FullPath)
		}
		return out
	}
	bBefore := listB()

	m := c.StartMount(t, "/a")
	if b, err := os.ReadFile(filepath.Join(m.Point, "in.txt")); err != nil || string(b) != "inside" {
		t.Fatalf("read through the /a mount: %q %v", b, err)
	}
	// No host path under the /a mount point can reach the secret.
	for _, p := range []string{"../b/secret", "../../b/secret", "up/secret", "./../b/secret"} {
		if b, err := os.ReadFile(filepath.Join(m.Point, p)); err == nil && bytes.Equal(b, secret) {
			t.Errorf("%s in the /a mount read the secret of /b", p)
		}
		// filepath.Join cleans ".."; openat-style relative lookups do not.
		if b, err := readAt(m.Point, p); err == nil && bytes.Equal(b, secret) {
			t.Errorf("openat(mount, %q) read the secret of /b", p)
		}
	}
	// Symlinks made through the /a mount, absolute and relative.
	for name, target := range map[string]string{"abs": "/b/secret", "rel": "../b/secret", "relup": "../../b/secret"} {
		if err := os.Symlink(target, filepath.Join(m.Point, name)); err != nil {
			t.Fatalf("symlink %s -> %s in the /a mount: %v", name, target, err)
		}
		if got, err := os.Readlink(filepath.Join(m.Point, name)); err != nil || got != target {
			t.Errorf("readlink %s: %q %v, want the target stored as given", name, got, err)
		}
		if b, err := os.ReadFile(filepath.Join(m.Point, name)); err == nil && bytes.Equal(b, secret) {
			t.Errorf("symlink %s -> %s in the /a mount read the secret of /b", name, target)
		}
	}
	// "up" -> "../b" through the /a mount resolves on the host too.
	if ents, err := os.ReadDir(filepath.Join(m.Point, "up")); err == nil {
		for _, e := range ents {
			if e.Name() == "secret" {
				t.Errorf("the /a mount listed /b through the symlink up -> ../b")
			}
		}
	}
	// Renames and links out of the mount.
	for _, dst := range []string{filepath.Join(m.Point, "..", "in.txt"), filepath.Join(whole.Point, "b", "in.txt")} {
		if err := os.Rename(filepath.Join(m.Point, "in.txt"), dst); !errors.Is(err, syscall.EXDEV) {
			t.Errorf("rename out of the /a mount to %s: %v, want EXDEV", dst, err)
		}
	}
	if err := os.Rename(filepath.Join(whole.Point, "b", "secret"), filepath.Join(m.Point, "stolen")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename from /b into the /a mount: %v, want EXDEV", err)
	}
	if err := os.Link(filepath.Join(whole.Point, "b", "secret"), filepath.Join(m.Point, "stolen")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("hard link from /b into the /a mount: %v, want EXDEV", err)
	}
	if err := os.Mkdir(filepath.Join(m.Point, ".."), 0o755); err == nil {
		t.Error("mkdir .. in the /a mount succeeded")
	}

	if got := listB(); !slices.Equal(got, bBefore) {
		t.Errorf("/b changed: before %v, after %v", bBefore, got)
	}
	if b, err := os.ReadFile(filepath.Join(whole.Point, "b", "secret")); err != nil || !bytes.Equal(b, secret) {
		t.Errorf("/b/secret after the attempts: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(m.Point, "in.txt")); err != nil || string(b) != "inside" {
		t.Errorf("/a/in.txt after the attempts: %q %v", b, err)
	}
}

// readAt opens rel relative to the directory dir with openat(2), without
// cleaning the path first, and reads it.
func readAt(dir, rel string) ([]byte, error) {
	dfd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(dfd)
	fd, err := syscall.Openat(dfd, rel, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}
