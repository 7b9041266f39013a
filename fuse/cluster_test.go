package fuse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/master"
	"github.com/cairn-storage/cairn/volume"
)

// cluster runs a master, a volume server and a filer in this process.
// The volume server can be stopped and started again on the same
// directory and port, to make the data path fail.
type cluster struct {
	ip     string
	maddr  string
	filer  *filer.Server
	client *filer.Client
	data   *filer.DataClient
	cancel context.CancelFunc
	done   chan struct{}

	volDir    string
	tmpDirs   []string // master and filer directories, removed at stop
	volMu     sync.Mutex
	volCancel context.CancelFunc
	volDone   chan struct{}
}

var (
	sharedOnce    sync.Once
	sharedCluster *cluster
	sharedMount   *Mounted
	sharedDir     string
	cleanups      []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if stateDamaged && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// stateDamaged is set when the shared cluster's filer state failed its
// check at the end of the run (checkState).
var stateDamaged bool

// checkState runs the filer's whole invariant check (fs.check) on the
// state every test of the run left behind, and reports problems on
// stderr (failing the run).
func (c *cluster) checkState() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := c.client.CheckState(ctx)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "checking the filer state at the end of the run:", err)
		stateDamaged = true
		return
	}
	fmt.Fprintf(os.Stderr, "the filer state at the end of the run is sound: %s\n", r.Summary())
}

// requireFUSE skips the test unless it can mount: root and /dev/fuse.
func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// shared returns the cluster and mount shared by the tests that need
// nothing special, and a fresh directory in the mount for this test.
func shared(t *testing.T) (*cluster, string) {
	t.Helper()
	requireFUSE(t)
	sharedOnce.Do(func() {
		sharedCluster = startCluster(t)
		base, err := os.MkdirTemp("", "cairn-fuse-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDir = base
		sharedMount = sharedCluster.mount(t, Config{Root: "/"}, base)
		cleanups = append(cleanups, func() {
			if err := sharedMount.Unmount(); err != nil {
				fmt.Fprintln(os.Stderr, "unmount:", err)
			}
			sharedCluster.checkState()
			sharedCluster.stop()
			os.RemoveAll(base)
		})
	})
	if sharedMount == nil {
		t.Fatal("shared cluster did not start")
	}
	dir, err := os.MkdirTemp(sharedDir, "t-")
	if err != nil {
		t.Fatal(err)
	}
	return sharedCluster, dir
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	ip := testutil.LoopbackIP(t, 9333, 19333, 29333, 8080, 18080, 8888, 18888, 28888)
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{ip: ip, maddr: net.JoinHostPort(ip, "9333"), cancel: cancel, done: make(chan struct{}, 2)}
	var err error
	c.volDir, err = os.MkdirTemp("", "cairn-vol-")
	if err != nil {
		t.Fatal(err)
	}
	mdir, _ := os.MkdirTemp("", "cairn-master-")
	fdir, _ := os.MkdirTemp("", "cairn-filer-")
	log := quietLogger()
	m, err := master.New(master.Config{Dir: mdir, IP: ip, Port: 9333, Pulse: 200 * time.Millisecond, VolumeSizeLimit: 64 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f, err := filer.NewServer(filer.Config{Dir: fdir, IP: ip, Port: 8888, Masters: []string{c.maddr}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c.filer = f
	for _, run := range []func(context.Context) error{m.Run, f.Run} {
		go func() { _ = run(ctx); c.done <- struct{}{} }()
	}
	c.startVolume(t)
	c.client = filer.NewClient([]string{f.URL()}, nil)
	c.data = &filer.DataClient{Assign: c.client.Assign, Lookup: c.client.LookupVolume, HTTP: httpx.Client(nil, 30*time.Second), Scheme: "http"}
	c.tmpDirs = []string{mdir, fdir}
	c.waitWritable(t)
	return c
}

// waitWritable waits until a needle can be written through the filer.
func (c *cluster) waitWritable(t testing.TB) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "filer and volume server ready", func() error {
		if err := c.filer.Ready(); err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(mustReq(http.MethodPut, "http://"+c.filer.URL()+"/.ready-probe", []byte("x")))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("probe write: %d", resp.StatusCode)
		}
		return nil
	})
}

func mustReq(method, url string, body []byte) *http.Request {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	return req
}

func (c *cluster) startVolume(t testing.TB) {
	t.Helper()
	c.volMu.Lock()
	defer c.volMu.Unlock()
	v, err := volume.NewServer(volume.Config{Dir: c.volDir, IP: c.ip, Port: 8080, Masters: []string{c.maddr}, Pulse: 200 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	c.volCancel, c.volDone = cancel, done
}

// volumeDown stops the volume server and returns restart, which starts it
// again and waits until it takes writes. Only the first call does
// anything: a test calls restart where it wants the server back and also
// defers it, so that a test failing while the server is down does not
// leave it down for the next one.
func (c *cluster) volumeDown(t testing.TB) (restart func()) {
	c.stopVolume()
	done := false
	return func() {
		if done {
			return
		}
		done = true
		c.startVolume(t)
		c.waitWritable(t)
	}
}

func (c *cluster) stopVolume() {
	c.volMu.Lock()
	defer c.volMu.Unlock()
	if c.volCancel != nil {
		c.volCancel()
		<-c.volDone
		c.volCancel = nil
	}
}

func (c *cluster) stop() {
	c.client.Close()
	c.stopVolume()
	c.cancel()
	for range 2 {
		<-c.done
	}
	os.RemoveAll(c.volDir)
	for _, d := range c.tmpDirs {
		os.RemoveAll(d)
	}
}

// secondMount mounts the whole filer namespace again, on a directory of
// its own for the rest of the test, and returns where path, a path under
// the shared mount, is seen through it.
func (c *cluster) secondMount(t *testing.T, path string) string {
	t.Helper()
	other := t.TempDir()
	m := c.mount(t, Config{Root: "/"}, other)
	t.Cleanup(func() { _ = m.Unmount() })
	return filepath.Join(other, filerPath(path))
}

// ownMount mounts the whole filer namespace again, for a test that needs
// a mount of its own (one whose testGap it sets), and returns it with a
// fresh directory in it.
func (c *cluster) ownMount(t *testing.T) (*Mounted, string) {
	t.Helper()
	m := c.mount(t, Config{Root: "/"}, t.TempDir())
	t.Cleanup(func() { _ = m.Unmount() })
	dir, err := os.MkdirTemp(m.fs.cfg.Dir, "t-")
	if err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// mount mounts cfg (filers filled in) at dir.
func (c *cluster) mount(t testing.TB, cfg Config, dir string) *Mounted {
	t.Helper()
	cfg.Filers = []string{c.filer.URL()}
	cfg.Dir = dir
	if cfg.Uid == 0 && cfg.Gid == 0 {
		cfg.Uid, cfg.Gid = -1, -1
	}
	cfg.Logger = quietLogger()
	if testing.Verbose() {
		cfg.Logger = slog.Default()
	}
	m, err := Mount(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readThroughFiler reads the committed content of path directly from
// the filer and the volume servers, bypassing the mount.
func (c *cluster) readThroughFiler(t *testing.T, path string) []byte {
	t.Helper()
	ctx := context.Background()
	client := filer.NewClient([]string{c.filer.URL()}, nil)
	defer client.Close()
	data := &filer.DataClient{Assign: client.Assign, Lookup: client.LookupVolume, Inline: client.ReadInline, HTTP: httpx.Client(nil, 30*time.Second), Scheme: "http"}
	in, err := client.Resolve(ctx, path)
	if err != nil {
		t.Fatalf("resolve %s: %v", path, err)
	}
	out := make([]byte, in.Size)
	for _, e := range filer.VisibleExtents(in.Slices, 0, in.Size) {
		if e.Fid == "" {
			continue
		}
		b, err := data.Read(ctx, e.Fid, int64(e.NeedleOff), int64(e.Len))
		if err != nil {
			t.Fatalf("read needle %s: %v", e.Fid, err)
		}
		copy(out[e.Off:], b)
	}
	return out
}

func pbRead(op string) *pb.FilerReadRequest { return &pb.FilerReadRequest{Op: op} }
