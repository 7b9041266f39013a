package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// Helpers for the tests of real applications (sqlite3, PostgreSQL,
// Prometheus) on a cairn mount. The applications come from Debian packages
// (.ci/run installs them); a test skips when its binaries are missing.

// needApps skips t with -short, and when any of the binaries (or FUSE) is
// missing; pkg names the Debian package that provides them.
func needApps(t *testing.T, pkg string, bins ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real processes on a real FUSE mount; skipped with -short")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not found (install the Debian package %s): %v", b, pkg, err)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not found (install the Debian package fuse3)")
	}
}

// run runs a command with a deadline and returns its combined output.
func appRun(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish within %v: %w", name, timeout, err)
	}
	return string(out), err
}

// mustRun is run that fails the test on error.
func appMustRun(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := appRun(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// startAppMount mounts the whole tree of c and waits until a write+fsync
// through it succeeds: right after a master is elected it refuses
// assignments for a grace period, and the first fsyncs fail with EIO. The
// probe is larger than the mount commits inline, so it needs the volume
// servers.
func startAppMount(t *testing.T, c *testcluster.Cluster) *testcluster.Mount {
	t.Helper()
	m := c.StartMount(t, "/")
	probe := filepath.Join(m.Point, ".probe")
	testutil.WaitFor(t, 60*time.Second, "a write+fsync through the new mount to succeed", func() error {
		f, err := os.Create(probe)
		if err != nil {
			return err
		}
		_, err = f.Write(make([]byte, 256<<10))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	return m
}

// remount simulates a crashed mount being started again: SIGKILL the mount
// process, lazily unmount the dead FUSE mount, start the same mount again
// on the same mount point and wait until it serves.
func appRemount(t *testing.T, m *testcluster.Mount) {
	t.Helper()
	m.Kill()
	if out, err := appRun(30*time.Second, "fusermount3", "-u", "-z", m.Point); err != nil {
		t.Fatalf("fusermount3 -u -z %s after the mount was killed: %v\n%s", m.Point, err, out)
	}
	m.Start(t)
	m.WaitMounted(t)
}

// pipeProc is a child process fed through a stdin pipe whose stdout lines
// are delivered on a channel as they come.
type pipeProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	done  chan struct{} // closed when the process has exited
	err   error         // exit status, valid after done
	mu    sync.Mutex
	errb  bytes.Buffer // stderr
}

func startPipeProc(t *testing.T, cmd *exec.Cmd) *pipeProc {
	t.Helper()
	p := &pipeProc{cmd: cmd, lines: make(chan string, 1<<16), done: make(chan struct{})}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = appLockedWriter{&p.mu, &p.errb}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p.in = in
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

type appLockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w appLockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

func (p *pipeProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.String()
}

// send writes s to the process's stdin; an error (the process died) is
// returned, not fatal.
func (p *pipeProc) send(s string) error {
	_, err := io.WriteString(p.in, s)
	return err
}

// next returns the next stdout line, or an error when the process exited
// or timeout passed.
func (p *pipeProc) next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("process exited (%v); stderr: %s", p.err, p.stderr())
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no output within %v; stderr: %s", timeout, p.stderr())
	}
}

// wait closes stdin and waits for the process to exit.
func (p *pipeProc) wait(timeout time.Duration) error {
	p.in.Close()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("did not exit within %v after its input was closed", timeout)
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *pipeProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	p.in.Close()
	<-p.done // stdout lines stay readable from p.lines
}

// waitHealthy waits until every running volume server is registered and
// every volume is writable again (all replicas caught up), except volumes
// that are full, and there is a filer leader.
func appWaitHealthy(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	c.WaitVolumesRegistered(t)
	testutil.WaitFor(t, 120*time.Second, "every volume writable", func() error {
		var st struct {
			IsLeader bool
			Volumes  []struct {
				ID       uint32
				Writable bool
				Reason   string
			}
		}
		for _, m := range c.Masters {
			if !m.Running() {
				continue
			}
			if err := c.GetJSON("http://"+m.HTTP+"/cluster/status", &st); err != nil || !st.IsLeader {
				continue
			}
			for _, v := range st.Volumes {
				if !v.Writable && !strings.HasPrefix(v.Reason, "volume is full") {
					return fmt.Errorf("volume %d not writable: %s", v.ID, v.Reason)
				}
			}
			return nil
		}
		return errors.New("no master leader")
	})
	if len(c.Filers) > 0 {
		c.WaitFilerLeader(t)
	}
}

// isConnErr reports whether err is what an application sees from a mount
// whose server is gone.
func isDeadMountErr(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ECONNABORTED)
}

// checkFilerStateAtEnd has every running filer of c check its own copy
// of the state (fs.check -all) when the test ends, unless it failed
// already: the workload must leave the metadata sound.
func checkFilerStateAtEnd(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		for _, f := range c.Filers {
			if !f.Running() {
				continue
			}
			fc := filer.NewClient([]string{f.HTTP}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			r, err := fc.CheckOwnState(ctx)
			cancel()
			fc.Close()
			if err == nil {
				err = r.Err()
			}
			if err != nil {
				t.Errorf("filer %s: %v", f.Name, err)
				continue
			}
			t.Logf("filer %s: state sound at %s", f.Name, r.Summary())
		}
	})
}
