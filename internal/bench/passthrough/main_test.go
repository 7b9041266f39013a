package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestServedReadsAndWrites: the passthrough's files are written by the
// process, not by the kernel on the original disk: writing 8 MiB through
// the mount moves 8 MiB more through this process's own write calls than
// the application's (the test's) calls alone, and the original file holds
// the bytes, which read back through the mount. (The kernel hands a
// file's descriptor over at open, for reads and writes alike, so the
// writes tell. The reads cannot: the loopback answers them by splicing
// from the original file, which no read counter of the process sees.)
func TestServedReadsAndWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3")
	}
	orig, mnt := t.TempDir(), t.TempDir()
	root, err := fs.NewLoopbackRoot(orig)
	if err != nil {
		t.Fatal(err)
	}
	server, err := fs.Mount(mnt, servedRoot(root), &fs.Options{MountOptions: fuse.MountOptions{MaxWrite: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Unmount() })

	data := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
	wchar0 := procIO(t)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	wchar1 := procIO(t)
	back, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes, %v", len(back), err)
	}
	onDisk, err := os.ReadFile(filepath.Join(orig, "f"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("the original file holds %d bytes, %v", len(onDisk), err)
	}
	n := uint64(len(data))
	// wchar counts the test's write and the server's pwrite of the bytes.
	if w := wchar1 - wchar0; w < 2*n {
		t.Errorf("writing %d bytes through the mount wrote %d bytes in this process: the kernel wrote the original file itself", n, w)
	}
}

// procIO returns wchar of /proc/self/io: the bytes this process's write
// calls have written.
func procIO(t *testing.T) (wchar uint64) {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(fmt.Errorf("/proc/self/io: %q: %w", sc.Text(), err))
		}
		if k == "wchar" {
			wchar = n
		}
	}
	return wchar
}
