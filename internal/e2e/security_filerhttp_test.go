package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/master"
	"github.com/cairn-storage/cairn/volume"
)

// apiFilers runs, in this process, a master, a volume server and one
// single-member filer per config (ports 8888, 8889, ...), all on one
// loopback IP. It returns the IP and the filers.
func apiFilers(t *testing.T, cfgs ...filer.Config) (string, []*filer.Server) {
	t.Helper()
	ports := []int{9333, 19333, 29333, 8080, 18080, 7777}
	for i := range cfgs {
		ports = append(ports, 8888+i, 18888+i, 28888+i)
	}
	ip := testutil.LoopbackIP(t, ports...)
	maddr := net.JoinHostPort(ip, "9333")
	m, err := master.New(master.Config{Dir: t.TempDir(), IP: ip, Port: 9333, Pulse: 200 * time.Millisecond, VolumeSizeLimit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.NewServer(volume.Config{Dir: t.TempDir(), IP: ip, Port: 8080, Masters: []string{maddr}, Pulse: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runs := []func(context.Context) error{m.Run, v.Run}
	var fs []*filer.Server
	for i, c := range cfgs {
		c.Dir, c.IP, c.Port, c.Masters = t.TempDir(), ip, 8888+i, []string{maddr}
		if c.HTTPBind == "self:7777" {
			c.HTTPBind = net.JoinHostPort(ip, "7777")
		}
		f, err := filer.NewServer(c)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
		runs = append(runs, f.Run)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(runs))
	for _, run := range runs {
		go func() { _ = run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range runs {
			<-done
		}
	})
	for _, f := range fs {
		testutil.WaitFor(t, 30*time.Second, "filer ready", func() error {
			if err := f.Ready(); err != nil {
				return err
			}
			_, err := f.State().Resolve("/")
			return err
		})
	}
	return ip, fs
}

// rawDo sends method on a raw request target (not cleaned by any client
// library) and returns the status and body.
func rawDo(t *testing.T, addr, method, target string, body []byte) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", method, target, addr, len(body))
	c.Write(body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFilerHTTPModes: a filer confined to a subtree and bound to its own
// address serves only that subtree, there; a read-only one refuses writes;
// an off one serves nothing; and traversal attempts (.., encoded .., //,
// NUL, through the HTTP API and through gRPC names) are refused with
// nothing changed.
func TestFilerHTTPModes(t *testing.T) {
	ip, fs := apiFilers(t,
		filer.Config{HTTPRoot: "/sub", HTTPBind: "self:7777"},
		filer.Config{HTTPAPI: filer.HTTPAPIReadOnly},
		filer.Config{HTTPAPI: filer.HTTPAPIOff},
	)
	rooted, readOnly, off := fs[0], fs[1], fs[2]
	api := net.JoinHostPort(ip, "7777")

	// The rooted filer: its API on 7777 sees /sub as "/".
	testutil.WaitFor(t, 30*time.Second, "a write through the rooted API", func() error {
		if code, body := rawDo(t, api, http.MethodPut, "/a.txt", []byte("inside")); code != http.StatusCreated {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if _, err := rooted.State().Resolve("/sub/a.txt"); err != nil {
		t.Fatalf("write through the rooted API did not land under /sub: %v", err)
	}
	if code, body := rawDo(t, api, http.MethodGet, "/a.txt", nil); code != http.StatusOK || body != "inside" {
		t.Fatalf("read through the rooted API: %d %q", code, body)
	}
	code, listing := rawDo(t, api, http.MethodGet, "/?pretty=y", nil)
	if code != http.StatusOK || !strings.Contains(listing, `"FullPath": "/a.txt"`) || strings.Contains(listing, "/sub") {
		t.Fatalf("listing of the API root: %d %s", code, listing)
	}
	// Its filer address no longer serves the namespace.
	main := rooted.URL()
	if code, _ := rawDo(t, main, http.MethodGet, "/a.txt", nil); code != http.StatusNotFound {
		t.Errorf("namespace read on the filer address with a separate --http-bind: %d, want 404", code)
	}
	if code, _ := rawDo(t, main, http.MethodGet, "/readyz", nil); code != http.StatusOK {
		t.Errorf("readyz on the filer address: %d", code)
	}

	// Traversal attempts: each refused, nothing outside /sub touched.
	attempts := []string{
		"/../escape", "/%2e%2e/escape", "/%2E%2E/escape", "/x/../../escape", "/x/%2e%2e/%2e%2e/escape",
		"//escape", "/x//escape", "/esc%00ape", "/..%2fescape", "/.%2e/escape", "/./escape",
		"/" + strings.Repeat("n", 300),
	}
	for _, target := range attempts {
		for _, m := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
			code, body := rawDo(t, api, m, target, []byte("x"))
			if code < 400 {
				t.Errorf("%s %s: %d %s, want refused", m, target, code, body)
			}
		}
		if code, body := rawDo(t, api, http.MethodPost, "/moved?mv.from="+strings.ReplaceAll(target, "%", "%25"), nil); code < 400 {
			t.Errorf("move from %s: %d %s, want refused", target, code, body)
		}
	}
	if code, _ := rawDo(t, api, http.MethodDelete, "/?recursive=true", nil); code < 400 {
		t.Errorf("deleting the API root answered %d", code)
	}
	if code, _ := rawDo(t, api, http.MethodPost, "/b.txt?mv.from=/", nil); code < 400 {
		t.Errorf("moving the API root answered %d", code)
	}
	for _, p := range []string{"/escape", "/sub/escape", "/x", "/moved", "/sub/moved"} {
		if _, err := rooted.State().Resolve(p); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s after traversal attempts: %v, want ENOENT", p, err)
		}
	}
	if _, err := rooted.State().Resolve("/sub/a.txt"); err != nil {
		t.Errorf("/sub/a.txt after traversal attempts: %v", err)
	}

	// gRPC names with "/" or "..", and paths with "..", are refused too.
	fc := filer.NewClient([]string{rooted.URL()}, nil)
	defer fc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []string{"/sub/../etc", "/sub/./a.txt", "sub/a.txt", "/sub//a.txt", "/sub/a\x00.txt"} {
		if _, err := fc.Resolve(ctx, p); err == nil {
			t.Errorf("gRPC Resolve(%q) succeeded", p)
		}
	}
	sub, err := fc.Resolve(ctx, "/sub")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"..", ".", "a/b", "../escape", "", "x\x00y", strings.Repeat("n", 300)} {
		ops := map[string]filer.Op{
			"create":  &filer.Create{Parent: sub.Ino, Name: name, Mode: 0o644},
			"mkdir":   &filer.Mkdir{Parent: sub.Ino, Name: name, Mode: 0o755},
			"symlink": &filer.Symlink{Parent: sub.Ino, Name: name, Target: "/etc/passwd"},
			"rename":  &filer.Rename{OldParent: sub.Ino, OldName: "a.txt", NewParent: sub.Ino, NewName: name},
		}
		for what, op := range ops {
			if _, err := fc.Apply(ctx, op); err == nil {
				t.Errorf("gRPC %s with name %q succeeded", what, name)
			}
		}
	}
	if _, err := rooted.State().Resolve("/sub/a.txt"); err != nil {
		t.Errorf("/sub/a.txt after refused gRPC names: %v", err)
	}

	// Read-only: reads answer, writes are refused and change nothing.
	roAddr := readOnly.URL()
	if code, body := rawDo(t, roAddr, http.MethodGet, "/", nil); code != http.StatusOK {
		t.Errorf("read-only listing: %d %s", code, body)
	}
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		if code, body := rawDo(t, roAddr, m, "/ro.txt", []byte("x")); code != http.StatusForbidden {
			t.Errorf("%s on a read-only API: %d %s, want 403", m, code, body)
		}
	}
	if _, err := readOnly.State().Resolve("/ro.txt"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("read-only API created a file: %v", err)
	}

	// Off: nothing but health and metrics.
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		if code, _ := rawDo(t, off.URL(), m, "/off.txt", []byte("x")); code != http.StatusNotFound {
			t.Errorf("%s on an API that is off: %d, want 404", m, code)
		}
	}
	if code, _ := rawDo(t, off.URL(), http.MethodGet, "/healthz", nil); code != http.StatusOK {
		t.Errorf("healthz with the API off: %d", code)
	}
	if _, err := off.State().Resolve("/off.txt"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("API that is off created a file: %v", err)
	}
}
