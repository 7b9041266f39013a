package csi_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/csi"
	"github.com/cairn-storage/cairn/csi/csitest"
	"github.com/cairn-storage/cairn/csi/mountsvc"
	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// killAppEnv makes the test binary play the application of
// TestMountServiceKillWithHolder (runKillApp) on the directory it names.
const killAppEnv = "CAIRN_CSITEST_KILLAPP"

const lostWrite = "acknowledged by the killed process, never stored"

// TestMountServiceKillWithHolder: a mount service killed with SIGKILL
// hands nothing over, yet the next start resumes its connections from
// the holder (docs/csi.md). An application (a process of its own) keeps
// calling statfs through the published target across the kill, so a
// request is almost always in the killed process's hands: it must be
// answered by the new process (the kernel sends it again), and the
// application must see no error and no ENOTCONN. A write the killed
// process acknowledged but had not stored must not be reported durable:
// fsync and close of that descriptor fail with EIO, and a fresh open
// shows the stored bytes. A descriptor with nothing unstored keeps
// working, and a clean restart after that resumes the mount again.
func TestMountServiceKillWithHolder(t *testing.T) {
	env := csitest.StartWithHolder(t)
	env.StartCSIProcess(t, csi.ModeMonolith)
	createVolume(t, env, "k", 0, nil)
	staging, target := publish(t, env, "k")

	app := startAppAs(t, killAppEnv, target)
	app.waitRecords(t, 100)
	if r := app.ask(t, "dirty"); r != "ok" {
		t.Fatalf("the application reports: %s", r)
	}

	before := app.count(t)
	env.RestartMountService(t, syscall.SIGKILL)
	app.waitRecords(t, before+200)

	log := env.MountSvc.Log()
	if !strings.Contains(log, "did not hand this mount over") || strings.Count(log, "resumed a live mount") != 1 {
		t.Fatal("after SIGKILL the mount service did not resume the held connection")
	}
	if strings.Contains(log, "dropping its connection") {
		t.Fatal("after SIGKILL the held connection was dropped")
	}
	t.Logf("requests served again after the kill: %d; the application's slowest statfs: %s",
		strings.Count(log, "serving again a request"), strings.TrimPrefix(app.ask(t, "longest"), "longest "))
	mounts, err := mountsvc.NewClient(env.MountSocket).List(ctxT(t))
	if err != nil || len(mounts) != 1 || !mounts[0].Alive || mounts[0].Dir != staging {
		t.Fatalf("after SIGKILL the mount service hosts %v (%v), want the staging mount", mounts, err)
	}

	if r := app.ask(t, "synclost"); !strings.Contains(r, "input/output error") {
		t.Fatalf("fsync of a descriptor whose acknowledged write died with the killed process reports %q, want EIO", r)
	}
	if r := app.ask(t, "synclost"); !strings.Contains(r, "input/output error") {
		t.Fatalf("the second fsync of that descriptor reports %q, want EIO again", r)
	}
	if r := app.ask(t, "closelost"); !strings.Contains(r, "input/output error") {
		t.Fatalf("close of that descriptor reports %q, want EIO", r)
	}
	if got := readFile(t, filepath.Join(target, "unstored")); got != "stored before the kill" {
		t.Fatalf("a fresh open of the file reads %q, want what was stored", got)
	}
	if r := app.ask(t, "check"); r != "ok" {
		t.Fatalf("a descriptor with nothing unstored at the kill: %s", r)
	}
	// The orphans the killed process kept stay while their descriptors
	// are open, and go once they are closed, though the new process
	// never saw those descriptors.
	if n := orphanCount(t, env); n != 2 {
		t.Fatalf("the filer keeps %d orphans while their descriptors are open, want 2", n)
	}
	if r := app.ask(t, "closeorphans"); r != "ok" {
		t.Fatalf("closing the orphans: %s", r)
	}
	deadline := time.Now().Add(30 * time.Second)
	for orphanCount(t, env) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the filer keeps %d orphans after their last descriptors closed", orphanCount(t, env))
		}
		time.Sleep(20 * time.Millisecond)
	}
	writeFile(t, filepath.Join(target, "new"), []byte("written after the kill"))
	if got := readFile(t, filepath.Join(staging, "new")); got != "written after the kill" {
		t.Fatalf("new file reads %q", got)
	}

	env.RestartMountService(t, syscall.SIGTERM)
	if got := strings.Count(env.MountSvc.Log(), "resumed a live mount"); got != 2 {
		t.Fatalf("the clean restart after the kill resumed %d times in all, want 2", got)
	}
	before = app.count(t)
	app.waitRecords(t, before+100)
	if r := app.ask(t, "check"); r != "ok" {
		t.Fatalf("after the clean restart: %s", r)
	}
	if r := app.ask(t, "stop"); !strings.HasPrefix(r, "done ") {
		t.Fatalf("the application reports: %s", r)
	}
	if got := readFile(t, filepath.Join(target, "kept")); !strings.HasPrefix(got, "before") || !strings.Contains(got, "after the kill") {
		t.Fatalf("kept file reads %q", got)
	}
	unpublish(t, env, "k", staging, target)
}

// runKillApp is the application of TestMountServiceKillWithHolder. It
// stores "stored before the kill" in dir/unstored and "before" in
// dir/kept (fsynced), keeps both open, makes two orphans (dir/orphan
// unlinked while open, and a file opened with O_TMPFILE), keeps them open
// too, and calls statfs on dir in a loop;
// then it answers commands:
//
//	count     -> "count N" (statfs calls that succeeded)
//	longest   -> "longest D": the slowest statfs call so far
//	dirty     -> "ok": a write to dir/unstored, not fsynced
//	synclost  -> fsync of dir/unstored: "ok" or "err ..."
//	closelost -> close of dir/unstored: "ok" or "err ..."
//	closeorphans -> close of the two orphans: "ok" or "err ..."
//	check     -> "ok": dir/kept takes a write, fsync and read back
//	stop      -> "done N": the statfs loop stopped
//
// A failed statfs stops the loop and is answered to count as "err ...".
func runKillApp(dir string) int {
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	open := func(name, data string) (*os.File, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteAt([]byte(data), 0); err != nil {
			return nil, err
		}
		return f, f.Sync()
	}
	lost, err := open("unstored", "stored before the kill")
	if err != nil {
		say("err %v", err)
		return 1
	}
	kept, err := open("kept", "before")
	if err != nil {
		say("err %v", err)
		return 1
	}
	// Two files on the filer's orphan list: one unlinked while open, one
	// made with O_TMPFILE. Their descriptors are not used again until
	// closeorphans.
	orphan, err := open("orphan", "unlinked while open")
	if err == nil {
		err = os.Remove(filepath.Join(dir, "orphan"))
	}
	if err != nil {
		say("err %v", err)
		return 1
	}
	tmp, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if err == nil {
		_, err = unix.Pwrite(tmp, []byte("never named"), 0)
	}
	if err == nil {
		err = unix.Fsync(tmp)
	}
	if err != nil {
		say("err O_TMPFILE: %v", err)
		return 1
	}
	var (
		mu      sync.Mutex
		n       int
		serr    error
		longest time.Duration // the slowest statfs call
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var st syscall.Statfs_t
			began := time.Now()
			err := syscall.Statfs(dir, &st)
			took := time.Since(began)
			mu.Lock()
			longest = max(longest, took)
			if err != nil {
				serr = err
				mu.Unlock()
				return
			}
			n++
			mu.Unlock()
		}
	}()
	say("ready")
	result := func(err error) string {
		if err != nil {
			return "err " + err.Error()
		}
		return "ok"
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "count":
			mu.Lock()
			c, e := n, serr
			mu.Unlock()
			if e != nil {
				say("err statfs: %v", e)
				continue
			}
			say("count %d", c)
		case "longest":
			mu.Lock()
			say("longest %v", longest.Round(time.Millisecond))
			mu.Unlock()
		case "dirty":
			_, err := lost.WriteAt([]byte(lostWrite), 0)
			say("%s", result(err))
		case "synclost":
			say("%s", result(lost.Sync()))
		case "closelost":
			say("%s", result(lost.Close()))
		case "closeorphans":
			err := orphan.Close()
			if cerr := unix.Close(tmp); err == nil {
				err = cerr
			}
			say("%s", result(err))
		case "check":
			say("%s", killAppCheck(kept))
		case "stop":
			close(stop)
			wg.Wait()
			if serr != nil {
				say("err statfs: %v", serr)
				continue
			}
			say("done %d", n)
		default:
			say("err unknown command %q", sc.Text())
		}
	}
	return 0
}

// orphanCount is the length of the filer's orphan list.
func orphanCount(t *testing.T, env *csitest.Env) int {
	t.Helper()
	c := filer.NewClient([]string{env.Filer}, nil)
	defer c.Close()
	var orphans []uint64
	if err := c.Read(ctxT(t), &pb.FilerReadRequest{Op: "orphans"}, &orphans); err != nil {
		t.Fatal(err)
	}
	return len(orphans)
}

func killAppCheck(kept *os.File) string {
	const msg = "after the kill"
	if _, err := kept.WriteAt([]byte(msg), 100); err != nil {
		return fmt.Sprintf("err write: %v", err)
	}
	if err := kept.Sync(); err != nil {
		return fmt.Sprintf("err fsync: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := kept.ReadAt(buf, 100); err != nil || string(buf) != msg {
		return fmt.Sprintf("err read back %q, %v", buf, err)
	}
	return "ok"
}

// TestMountServiceKillWithoutResend: where the kernel cannot send again
// the requests a killed mount service had read and not answered (before
// Linux 6.9; forced here with CAIRN_FUSE_RESEND=off), the next start
// answers them with EIO from the list the killed process kept, and the
// mount goes on: the application blocked in such a request gets one
// I/O error, not a hang and not ENOTCONN, and the mount serves
// everything after. The filer is stopped (SIGSTOP) so that a mkdir is
// still in the killed process's hands; a cycle where the mkdir was not
// (the kernel had not handed it over yet) is tried again.
func TestMountServiceKillWithoutResend(t *testing.T) {
	env := csitest.StartWithHolder(t)
	env.StartCSIProcess(t, csi.ModeMonolith)
	createVolume(t, env, "r", 0, nil)
	staging, target := publish(t, env, "r")
	writeFile(t, filepath.Join(target, "kept"), []byte("written before the kills"))
	t.Setenv("CAIRN_FUSE_RESEND", "off") // inherited by the mount services started from here on
	filerProc := env.Cluster.Filers[0]

	answered := 0
	for cycle := 1; cycle <= 5 && answered == 0; cycle++ {
		name := filepath.Join(target, fmt.Sprintf("d%d", cycle))
		if err := filerProc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		mkdir := exec.Command("mkdir", name)
		var stderr strings.Builder
		mkdir.Stderr = &stderr
		if err := mkdir.Start(); err != nil {
			_ = filerProc.Signal(syscall.SIGCONT)
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- mkdir.Wait() }()
		// mkdir waits in the kernel for the mount's answer.
		wchan := ""
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(wchan, "request_wait_answer") && !strings.Contains(wchan, "fuse") && time.Now().Before(deadline) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", mkdir.Process.Pid))
			wchan = string(b)
			time.Sleep(time.Millisecond)
		}
		logBefore := strings.Count(env.MountSvc.Log(), "they were answered with EIO")
		env.MountSvc.Signal(syscall.SIGKILL)
		if err := filerProc.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		env.MountSvc.Start(t)
		csitest.WaitSocket(t, env.MountSocket)
		var err error
		select {
		case err = <-exited:
		case <-time.After(2 * time.Minute):
			t.Fatalf("cycle %d: mkdir still waits two minutes after the restart (wchan %q)", cycle, wchan)
		}
		log := env.MountSvc.Log()
		if strings.Contains(log, "dropping its connection") {
			t.Fatalf("cycle %d: the held connection was dropped:\n%s", cycle, log)
		}
		took := strings.Count(log, "they were answered with EIO") - logBefore
		t.Logf("cycle %d: mkdir waited in %q at the kill; it ended with %v %q; takeovers answering EIO: %d", cycle, strings.TrimSpace(wchan), err, strings.TrimSpace(stderr.String()), took)
		switch {
		case err != nil && strings.Contains(stderr.String(), "Input/output error"):
			if !strings.Contains(log, "requests=1") {
				t.Fatalf("cycle %d: mkdir got EIO, but the mount service does not say it answered one request:\n%s", cycle, log)
			}
			answered++
		case err != nil:
			t.Fatalf("cycle %d: mkdir failed otherwise: %v %s", cycle, err, stderr.String())
		}
		// Served again after the kill, whatever became of the mkdir.
		p := filepath.Join(target, fmt.Sprintf("after%d", cycle))
		writeFile(t, p, []byte("written after the kill"))
		if got := readFile(t, p); got != "written after the kill" {
			t.Fatalf("cycle %d: a file written after the kill reads %q", cycle, got)
		}
	}
	if answered == 0 {
		t.Fatal("in 5 cycles the killed mount service never had the mkdir in its hands")
	}
	if got := readFile(t, filepath.Join(target, "kept")); got != "written before the kills" {
		t.Fatalf("kept file reads %q", got)
	}
	mounts, err := mountsvc.NewClient(env.MountSocket).List(ctxT(t))
	if err != nil || len(mounts) != 1 || !mounts[0].Alive || mounts[0].Dir != staging {
		t.Fatalf("after the kills the mount service hosts %v (%v), want the staging mount", mounts, err)
	}
	unpublish(t, env, "r", staging, target)
}
