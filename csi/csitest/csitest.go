// Package csitest starts what the CSI tests need: a real cluster, a real
// mount service process and the CSI plugin, in process or as a process of
// its own. Tests that use it call Main from their TestMain, so that the
// test binary can serve as `cairn mount-service` and `cairn csi` when the
// cairn binary does not have those commands.
package csitest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-storage/cairn/csi"
	"github.com/cairn-storage/cairn/csi/mountsvc"
	"github.com/cairn-storage/cairn/internal/mountinfo"
	"github.com/cairn-storage/cairn/internal/testcluster"
)

// roleEnv names the role a re-executed test binary plays.
const roleEnv = "CAIRN_CSITEST_ROLE"

// Main runs the tests, or plays `mount-service` or `csi` when the binary
// was started for that by this package.
func Main(m *testing.M) {
	switch role := os.Getenv(roleEnv); role {
	case "":
		os.Exit(m.Run())
	case "mount-service", "csi", "fuse-holder":
		os.Exit(runRole(role, os.Args[1:]))
	default:
		fmt.Fprintf(os.Stderr, "csitest: unknown role %q\n", role)
		os.Exit(2)
	}
}

// runRole is a minimal copy of the command line of `cairn mount-service`
// and `cairn csi` (cmd/cairn), calling the same packages.
func runRole(role string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	var err error
	switch role {
	case "mount-service":
		socket := fs.String("socket", "", "")
		filers := fs.String("filer", "", "")
		state := fs.String("state", "", "")
		unmount := fs.Bool("unmount-on-exit", false, "")
		holder := fs.String("holder", "", "")
		if fs.Parse(args) != nil {
			return 2
		}
		err = mountsvc.Run(ctx, mountsvc.Config{Socket: *socket, Filers: strings.Split(*filers, ","), StateFile: *state, UnmountOnExit: *unmount, Holder: *holder, Logger: log})
	case "fuse-holder":
		socket := fs.String("socket", "", "")
		if fs.Parse(args) != nil {
			return 2
		}
		err = mountsvc.RunHolder(ctx, *socket, log)
	case "csi":
		endpoint := fs.String("endpoint", "", "")
		mode := fs.String("mode", "", "")
		filers := fs.String("filer", "", "")
		masters := fs.String("master", "", "")
		nodeID := fs.String("nodeid", "", "")
		mountSocket := fs.String("mount-socket", "", "")
		fs.String("log-level", "", "")
		if fs.Parse(args) != nil {
			return 2
		}
		var ms []string
		if *masters != "" {
			ms = strings.Split(*masters, ",")
		}
		err = csi.Run(ctx, csi.Config{Endpoint: *endpoint, Mode: *mode, Filers: strings.Split(*filers, ","), Masters: ms,
			NodeID: *nodeID, MountSocket: *mountSocket, Version: "test", Logger: log})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cairn:", err)
		return 1
	}
	return 0
}

// RequireFUSE skips the test without root or /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3")
	}
}

var (
	cmdOnce sync.Once
	hasCmds bool
)

// command returns how to start `cairn <role> args...`: the cairn binary if
// it has the command, else this test binary playing it.
func command(t testing.TB, role string, args ...string) *exec.Cmd {
	bin := testcluster.Binary(t)
	cmdOnce.Do(func() {
		out, _ := exec.Command(bin, "mount-service", "-h").CombinedOutput()
		out2, _ := exec.Command(bin, "csi", "-h").CombinedOutput()
		hasCmds = !strings.Contains(string(out)+string(out2), "unknown command")
	})
	if hasCmds {
		return exec.Command(bin, append([]string{role}, args...)...)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	return cmd
}

// Proc is a process started by Env.
type Proc struct {
	Name string
	role string
	args []string
	log  string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the process (again).
func (p *Proc) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== start %s %s\n", p.role, strings.Join(p.args, " "))
	cmd := command(t, p.role, p.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Signal sends sig and waits (up to 60 s, then SIGKILL) for the exit.
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Env is a cluster with a mount service and a CSI plugin.
type Env struct {
	Cluster     *testcluster.Cluster
	Dir         string // scratch directory (mount points go below it)
	Filer       string // filer HTTP address
	Master      string
	MountSocket string
	StateFile   string
	MountSvc    *Proc
	// HolderSocket and Holder are the fuse holder's, with StartWithHolder.
	HolderSocket string
	Holder       *Proc
	// Endpoint is the CSI plugin's socket and Conn a client connection to
	// it, once StartCSI or StartCSIProcess ran.
	Endpoint string
	Conn     *grpc.ClientConn
	CSIProc  *Proc // the plugin process (StartCSIProcess)

	procs []*Proc
}

// Start starts a cluster (1 master, 1 volume server, 1 filer) and a mount
// service. Everything is stopped at cleanup, and leftover mounts under
// Dir are detached.
func Start(t testing.TB) *Env { return start(t, false) }

// StartWithHolder is Start with a fuse holder (`cairn fuse-holder`), which
// the mount service hands its connections to (`--holder`): restarting the
// service hands the mounts over instead of breaking them.
func StartWithHolder(t testing.TB) *Env { return start(t, true) }

func start(t testing.TB, holder bool) *Env {
	t.Helper()
	RequireFUSE(t)
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	dir, err := os.MkdirTemp("", "cairn-csi-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Cluster: c, Dir: dir, Filer: c.Filers[0].HTTP, Master: c.Masters[0].HTTP,
		MountSocket: filepath.Join(dir, "mount.sock"), StateFile: filepath.Join(dir, "mounts.json")}
	t.Cleanup(func() {
		if e.Conn != nil {
			e.Conn.Close()
		}
		for i := len(e.procs) - 1; i >= 0; i-- {
			e.procs[i].Signal(syscall.SIGTERM)
		}
		DetachAll(dir)
		if t.Failed() {
			for _, p := range e.procs {
				l := p.Log()
				if len(l) > 30000 {
					l = "...\n" + l[len(l)-30000:]
				}
				t.Logf("---- log of %s\n%s", p.Name, l)
			}
		}
		os.RemoveAll(dir)
	})
	args := []string{"--socket", e.MountSocket, "--filer", e.Filer, "--state", e.StateFile}
	if holder {
		// Started first, so stopped last: the mount service hands over
		// to it at cleanup.
		e.HolderSocket = filepath.Join(dir, "fuse-holder.sock")
		e.Holder = e.proc("fuse-holder", "fuse-holder", "--socket", e.HolderSocket)
		e.Holder.Start(t)
		WaitPacketSocket(t, e.HolderSocket)
		args = append(args, "--holder", e.HolderSocket)
	}
	e.MountSvc = e.proc("mount-service", "mount-service", args...)
	e.MountSvc.Start(t)
	WaitSocket(t, e.MountSocket)
	return e
}

func (e *Env) proc(name, role string, args ...string) *Proc {
	p := &Proc{Name: name, role: role, args: args, log: filepath.Join(e.Dir, name+".log")}
	e.procs = append(e.procs, p)
	return p
}

// StartCSI serves the plugin in this process in monolith mode.
func (e *Env) StartCSI(t testing.TB) {
	t.Helper()
	e.Endpoint = filepath.Join(e.Dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := csi.Run(ctx, csi.Config{Endpoint: "unix://" + e.Endpoint, Mode: csi.ModeMonolith, Filers: []string{e.Filer},
			Masters: []string{e.Master}, NodeID: "node-1", MountSocket: e.MountSocket, Version: "test"}); err != nil {
			t.Errorf("csi: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	WaitSocket(t, e.Endpoint)
	e.dial(t)
}

// StartCSIProcess starts `cairn csi` in the given mode as a process.
func (e *Env) StartCSIProcess(t testing.TB, mode string) {
	t.Helper()
	e.Endpoint = filepath.Join(e.Dir, "csi-"+mode+".sock")
	e.CSIProc = e.proc("csi-"+mode, "csi", "--endpoint", "unix://"+e.Endpoint, "--mode", mode, "--filer", e.Filer,
		"--master", e.Master, "--nodeid", "node-1", "--mount-socket", e.MountSocket, "--log-level", "debug")
	e.CSIProc.Start(t)
	WaitSocket(t, e.Endpoint)
	e.dial(t)
}

// RestartCSIProcess stops the plugin process with sig, starts it again
// and reconnects.
func (e *Env) RestartCSIProcess(t testing.TB, sig syscall.Signal) {
	t.Helper()
	e.CSIProc.Signal(sig)
	if e.Conn != nil {
		e.Conn.Close()
		e.Conn = nil
	}
	e.CSIProc.Start(t)
	WaitSocket(t, e.Endpoint)
	e.dial(t)
}

// RestartMountService stops the mount service with sig and starts it
// again (it restores its mounts from the state file).
func (e *Env) RestartMountService(t testing.TB, sig syscall.Signal) {
	t.Helper()
	e.MountSvc.Signal(sig)
	e.MountSvc.Start(t)
	WaitSocket(t, e.MountSocket)
}

func (e *Env) dial(t testing.TB) {
	if e.Conn != nil {
		return
	}
	conn, err := grpc.NewClient("unix://"+e.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.Conn = conn
}

// Controller, Node and Identity are clients of the plugin.
func (e *Env) Controller() csipb.ControllerClient { return csipb.NewControllerClient(e.Conn) }
func (e *Env) Node() csipb.NodeClient             { return csipb.NewNodeClient(e.Conn) }
func (e *Env) Identity() csipb.IdentityClient     { return csipb.NewIdentityClient(e.Conn) }

// WaitSocket waits (up to 30 s) until a unix socket accepts connections.
func WaitSocket(t testing.TB, path string) {
	t.Helper()
	waitDial(t, "unix", path)
}

// WaitPacketSocket waits (up to 30 s) until a SOCK_SEQPACKET unix socket
// accepts connections.
func WaitPacketSocket(t testing.TB, path string) {
	t.Helper()
	waitDial(t, "unixpacket", path)
}

func waitDial(t testing.TB, network, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial(network, path)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing serves on %s after 30s: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DetachAll lazily unmounts every mount point below dir, deepest first.
func DetachAll(dir string) {
	ms, err := mountinfo.Read()
	if err != nil {
		return
	}
	var points []string
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") {
			points = append(points, m.Point)
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// Errno extracts a syscall.Errno from err (0 if none).
func Errno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
