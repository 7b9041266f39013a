package csi_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/csi"
	"github.com/cairn-storage/cairn/csi/csitest"
	"github.com/cairn-storage/cairn/csi/mountsvc"
)

// appEnv makes the test binary play the application of the upgrade test
// (runApp) on the directory it names.
const appEnv = "CAIRN_CSITEST_APP"

const appEntries = 300

func appEntry(i int) string {
	return fmt.Sprintf("entry-%03d-with-a-long-name-so-that-a-page-holds-few-of-them", i)
}

// TestMountServiceUpgrade: with a fuse holder, stopping the mount service
// (SIGTERM) and starting a new one hands every mount over to the new
// process. An application (a process of its own) appending and fsyncing
// through the published target sees no error (it blocks meanwhile); a
// descriptor and a directory listing it opened before keep working; every
// record is read back afterwards. Two upgrades in a row.
//
// The application is a separate process because this one must not hold
// files of the mount open while it starts the new mount service: exec
// closes them, and closing a FUSE file waits for the (unserved) mount.
func TestMountServiceUpgrade(t *testing.T) {
	env := csitest.StartWithHolder(t)
	env.StartCSIProcess(t, csi.ModeMonolith)
	createVolume(t, env, "app", 0, nil)
	staging, target := publish(t, env, "app")

	// A directory with more entries than one READDIR reply holds, so
	// that the application reads its listing partly before and partly
	// after the first upgrade.
	if err := os.Mkdir(filepath.Join(target, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range appEntries {
		if err := os.WriteFile(filepath.Join(target, "dir", appEntry(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	app := startApp(t, target)
	app.waitRecords(t, 50)
	for round := 1; round <= 2; round++ {
		before := app.count(t)
		env.RestartMountService(t, syscall.SIGTERM)
		app.waitRecords(t, before+100)

		if got := strings.Count(env.MountSvc.Log(), "resumed a live mount"); got != round {
			t.Fatalf("upgrade %d: the mount service log says %d resumptions, want %d", round, got, round)
		}
		if strings.Contains(env.MountSvc.Log(), "mounted again from the state file") {
			t.Fatalf("upgrade %d: a mount was mounted afresh instead of handed over", round)
		}
		mounts, err := mountsvc.NewClient(env.MountSocket).List(ctxT(t))
		if err != nil || len(mounts) != 1 || !mounts[0].Alive || mounts[0].Dir != staging {
			t.Fatalf("upgrade %d: mount service hosts %v (%v), want the staging mount", round, mounts, err)
		}
		if r := app.ask(t, fmt.Sprintf("check %d", round)); r != "ok" {
			t.Fatalf("upgrade %d: the application reports: %s", round, r)
		}
	}
	r := app.ask(t, "stop")
	var n int
	if _, err := fmt.Sscanf(r, "done %d", &n); err != nil {
		t.Fatalf("the application reports: %s", r)
	}
	checkRecords(t, filepath.Join(target, "log"), n)
	if got := readFile(t, filepath.Join(staging, "kept")); !strings.HasPrefix(got, "before") || !strings.Contains(got, "after upgrade 2") {
		t.Fatalf("kept file reads %q", got)
	}
	writeFile(t, filepath.Join(target, "new"), []byte("written after two upgrades"))
	if got := readFile(t, filepath.Join(target, "new")); got != "written after two upgrades" {
		t.Fatalf("new file reads %q", got)
	}
	unpublish(t, env, "app", staging, target)
}

// app is the application process of TestMountServiceUpgrade, driven one
// command per line over its stdin and answering one line on its stdout.
type app struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startApp(t *testing.T, dir string) *app { return startAppAs(t, appEnv, dir) }

// startAppAs starts the test binary as the application that the
// environment variable env selects (see TestMain), on dir.
func startAppAs(t *testing.T, env, dir string) *app {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &app{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			// Stuck in a FUSE request nobody answers: it ends when the
			// environment's cleanup ends the connection.
			t.Log("the application process did not exit within 10 s of SIGKILL (blocked in a FUSE request?)")
		}
	})
	if r := a.read(t); r != "ready" {
		t.Fatalf("application: %s", r)
	}
	return a
}

func (a *app) read(t *testing.T) string {
	t.Helper()
	if !a.out.Scan() {
		t.Fatalf("the application process ended: %v", a.out.Err())
	}
	return a.out.Text()
}

func (a *app) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(a.in, cmd); err != nil {
		t.Fatal(err)
	}
	return a.read(t)
}

func (a *app) count(t *testing.T) int {
	t.Helper()
	r := a.ask(t, "count")
	n, err := strconv.Atoi(strings.TrimPrefix(r, "count "))
	if err != nil {
		t.Fatalf("the application reports: %s", r)
	}
	return n
}

func (a *app) waitRecords(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for a.count(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the application made no progress: %d records, want %d", a.count(t), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runApp is the application: it opens a directory listing and reads a
// little of it, opens a file and writes to it, and appends and fsyncs
// records to dir/log; then it answers commands:
//
//	count    -> "count N" (records written)
//	check R  -> "ok": the file opened at start takes a write, fsync and
//	            read at an offset of round R; at R=1 the rest of the
//	            listing is read and must hold every entry exactly once
//	stop     -> "done N": the writer stopped after a final fsync
//
// Any error is answered "err ...".
func runApp(dir string) int {
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	d, err := os.Open(filepath.Join(dir, "dir"))
	if err != nil {
		say("err %v", err)
		return 1
	}
	listed, err := d.ReadDir(10)
	if err != nil {
		say("err readdir: %v", err)
		return 1
	}
	kept, err := os.OpenFile(filepath.Join(dir, "kept"), os.O_CREATE|os.O_RDWR, 0o644)
	if err == nil {
		_, err = kept.WriteAt([]byte("before"), 0)
	}
	if err != nil {
		say("err kept file: %v", err)
		return 1
	}
	w, err := newWriter(filepath.Join(dir, "log"))
	if err != nil {
		say("err writer: %v", err)
		return 1
	}
	say("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "count":
			w.mu.Lock()
			n, werr := w.n, w.err
			w.mu.Unlock()
			if werr != nil {
				say("err writer: %v", werr)
				continue
			}
			say("count %d", n)
		case len(f) == 2 && f[0] == "check":
			round, _ := strconv.Atoi(f[1])
			say("%s", appCheck(kept, d, &listed, round))
		case len(f) == 1 && f[0] == "stop":
			close(w.stop)
			w.wg.Wait()
			if w.err != nil {
				say("err writer: %v", w.err)
				continue
			}
			if err := kept.Close(); err != nil {
				say("err close of the file opened before: %v", err)
				continue
			}
			say("done %d", w.n)
		default:
			say("err unknown command %q", sc.Text())
		}
	}
	return 0
}

func appCheck(kept, d *os.File, listed *[]os.DirEntry, round int) string {
	msg := fmt.Sprintf("after upgrade %d", round)
	off := int64(100 * round)
	if _, err := kept.WriteAt([]byte(msg), off); err != nil {
		return fmt.Sprintf("err write through a descriptor opened before: %v", err)
	}
	if err := kept.Sync(); err != nil {
		return fmt.Sprintf("err fsync of a descriptor opened before: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := kept.ReadAt(buf, off); err != nil || string(buf) != msg {
		return fmt.Sprintf("err read back %q, %v; want %q", buf, err, msg)
	}
	if round != 1 {
		return "ok"
	}
	rest, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Sprintf("err reading a directory listing opened before: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range append(*listed, rest...) {
		if seen[e.Name()] {
			return fmt.Sprintf("err listing across the upgrade: %q twice", e.Name())
		}
		seen[e.Name()] = true
	}
	for i := range appEntries {
		if !seen[appEntry(i)] {
			return fmt.Sprintf("err listing across the upgrade misses %q (%d entries)", appEntry(i), len(seen))
		}
	}
	if len(seen) != appEntries {
		return fmt.Sprintf("err listing across the upgrade has %d entries, want %d", len(seen), appEntries)
	}
	return "ok"
}
