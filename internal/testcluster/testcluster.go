// Package testcluster starts real cairn processes on loopback addresses for
// integration tests, and kills them with SIGKILL. Every process gets its own
// 127.x.y.z address so default ports never collide between tests.
package testcluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the cairn binary to run: $CAIRN_BIN if set (make test sets
// it), else one built once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("CAIRN_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cairn")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/cairn-storage/cairn/cmd/cairn").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("testcluster: %v", buildErr)
	}
	return binPath
}

// Proc is one cairn process (a master, volume server or filer).
type Proc struct {
	Name string
	HTTP string // HTTP address ip:port
	Dir  string
	args []string
	bin  string
	log  string // log file path

	mu  sync.Mutex // guards cmd and the exit channel
	cmd *exec.Cmd
	ch  chan struct{} // closed when cmd exits
}

// Start launches the process. It does not wait for readiness.
func (p *Proc) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("%s: already running", p.Name)
	}
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== start %s %s\n", p.Name, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("%s: start: %v", p.Name, err)
	}
	ch := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(ch) }()
	p.cmd, p.ch = cmd, ch
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits (up to 30s, then SIGKILL).
func (p *Proc) Stop() { p.signal(syscall.SIGTERM) }

func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, ch := p.cmd, p.ch
	p.cmd, p.ch = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-ch
	}
}

// Running reports whether the process was started and not stopped by us.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.ch:
		return false
	default:
		return true
	}
}

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Options shape a cluster.
type Options struct {
	Masters           int
	Volumes           int
	Filers            int
	Replication       string // default placement, "000" if empty
	VolumeSizeLimitMB int    // default 64
	MaxVolumes        int    // per volume server, default 30
	Pulse             time.Duration
	// FilerArgs are extra flags for every filer; MasterArgs for every master.
	FilerArgs  []string
	MasterArgs []string
	// VolumeDirs, when set, gives the data directory of each volume server.
	VolumeDirs []string
	// Racks and DCs, when set, give the rack and the data center of each
	// volume server ("rack1" and "dc1" past their ends).
	Racks, DCs []string
	// Security turns on mutual TLS: `cairn security init` makes the
	// material for every process's address, every server runs with
	// security.toml, mounts with the client-only client.toml, and the
	// cluster's Client speaks TLS with the client certificate.
	Security bool
}

// Cluster is a set of masters and volume servers.
type Cluster struct {
	Masters []*Proc
	Volumes []*Proc
	Filers  []*Proc
	Client  *http.Client
	// With Options.Security: the directory `cairn security init` wrote, its
	// security.toml and client.toml, and the client's loaded configuration.
	SecDir, SecFile, ClientFile string
	ClientSec                   *security.Config
	scheme                      string // "http" or "https"
}

// URL returns the URL of path on the HTTP address addr, in the scheme the
// cluster speaks.
func (c *Cluster) URL(addr, path string) string { return c.scheme + "://" + addr + path }

// Start starts a cluster and waits until it has a master leader and every
// volume server registered. Processes are killed at cleanup, and their logs
// are printed if the test failed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Replication == "" {
		o.Replication = "000"
	}
	if o.VolumeSizeLimitMB == 0 {
		o.VolumeSizeLimitMB = 64
	}
	if o.MaxVolumes == 0 {
		o.MaxVolumes = 30
	}
	if o.Pulse == 0 {
		o.Pulse = 500 * time.Millisecond
	}
	bin := Binary(t)
	root := t.TempDir()
	c := &Cluster{Client: &http.Client{Timeout: 30 * time.Second}, scheme: "http"}
	var peers, volIPs, fpeers, hosts []string
	for range o.Masters {
		peers = append(peers, net.JoinHostPort(testutil.LoopbackIP(t, 9333, 19333, 29333), "9333"))
	}
	for range o.Volumes {
		volIPs = append(volIPs, testutil.LoopbackIP(t, 8080, 18080))
	}
	for range o.Filers {
		fpeers = append(fpeers, net.JoinHostPort(testutil.LoopbackIP(t, 8888, 18888, 28888), "8888"))
	}
	var secArgs []string
	if o.Security {
		for _, a := range append(append([]string{}, peers...), fpeers...) {
			ip, _, _ := net.SplitHostPort(a)
			hosts = append(hosts, ip)
		}
		hosts = append(hosts, volIPs...)
		c.initSecurity(t, bin, filepath.Join(root, "sec"), hosts)
		secArgs = []string{"--security", c.SecFile}
	}
	for i, addr := range peers {
		ip, _, _ := net.SplitHostPort(addr)
		dir := filepath.Join(root, fmt.Sprintf("m%d", i))
		c.Masters = append(c.Masters, &Proc{
			Name: fmt.Sprintf("master%d", i), HTTP: addr, Dir: dir, bin: bin, log: dir + ".log",
			args: append([]string{"master", "--dir", dir, "--ip", ip, "--port", "9333",
				"--peers", strings.Join(peers, ","), "--default-replication", o.Replication,
				"--volume-size-limit-mb", strconv.Itoa(o.VolumeSizeLimitMB), "--pulse", o.Pulse.String()}, append(secArgs, o.MasterArgs...)...),
		})
	}
	for i, ip := range volIPs {
		dir := filepath.Join(root, fmt.Sprintf("v%d", i))
		if i < len(o.VolumeDirs) {
			dir = o.VolumeDirs[i]
		}
		rack, dc := "rack1", "dc1"
		if i < len(o.Racks) {
			rack = o.Racks[i]
		}
		if i < len(o.DCs) {
			dc = o.DCs[i]
		}
		c.Volumes = append(c.Volumes, &Proc{
			Name: fmt.Sprintf("volume%d", i), HTTP: net.JoinHostPort(ip, "8080"), Dir: dir, bin: bin,
			log: filepath.Join(root, fmt.Sprintf("v%d.log", i)),
			args: append([]string{"volume", "--dir", dir, "--ip", ip, "--port", "8080",
				"--master", strings.Join(peers, ","), "--max", strconv.Itoa(o.MaxVolumes),
				"--dc", dc, "--rack", rack, "--pulse", o.Pulse.String()}, secArgs...),
		})
	}
	for i, addr := range fpeers {
		ip, _, _ := net.SplitHostPort(addr)
		dir := filepath.Join(root, fmt.Sprintf("f%d", i))
		c.Filers = append(c.Filers, &Proc{
			Name: fmt.Sprintf("filer%d", i), HTTP: addr, Dir: dir, bin: bin, log: dir + ".log",
			args: append([]string{"filer", "--dir", dir, "--ip", ip, "--port", "8888",
				"--peers", strings.Join(fpeers, ","), "--master", strings.Join(peers, ",")}, append(secArgs, o.FilerArgs...)...),
		})
	}
	t.Cleanup(func() {
		for _, p := range c.all() {
			p.Kill()
		}
		if t.Failed() {
			for _, p := range c.all() {
				log := p.Log()
				if len(log) > 20000 {
					log = "...\n" + log[len(log)-20000:]
				}
				t.Logf("---- log of %s (%s)\n%s", p.Name, p.HTTP, log)
			}
		}
	})
	for _, p := range c.all() {
		p.Start(t)
	}
	c.WaitLeader(t)
	c.WaitVolumesRegistered(t)
	if len(c.Filers) > 0 {
		c.WaitFilerLeader(t)
	}
	return c
}

// All returns every process of the cluster.
func (c *Cluster) All() []*Proc { return c.all() }

func (c *Cluster) all() []*Proc {
	return append(append(append([]*Proc{}, c.Masters...), c.Volumes...), c.Filers...)
}

// FilerAddrs returns the HTTP addresses of all filers.
func (c *Cluster) FilerAddrs() []string {
	var out []string
	for _, f := range c.Filers {
		out = append(out, f.HTTP)
	}
	return out
}

// FilerLeader returns the running filer that every running filer names as
// leader, or an error.
func (c *Cluster) FilerLeader() (*Proc, error) {
	var leader string
	for _, f := range c.Filers {
		if !f.Running() {
			continue
		}
		var r struct {
			Leader string `json:"leader"`
		}
		if err := c.GetJSON(c.URL(f.HTTP, "/readyz"), &r); err != nil {
			return nil, err
		}
		if leader != "" && r.Leader != leader {
			return nil, fmt.Errorf("filers disagree on the leader: %s vs %s", leader, r.Leader)
		}
		leader = r.Leader
	}
	for _, f := range c.Filers {
		if f.HTTP == leader && f.Running() {
			return f, nil
		}
	}
	return nil, fmt.Errorf("filer leader %q is not a running filer", leader)
}

// WaitFilerLeader waits (generously) for an agreed filer leader.
func (c *Cluster) WaitFilerLeader(t testing.TB) *Proc {
	t.Helper()
	var leader *Proc
	testutil.WaitFor(t, 60*time.Second, "a filer leader", func() (err error) {
		leader, err = c.FilerLeader()
		return err
	})
	return leader
}

// Status is the subset of /cluster/status tests use.
type Status struct {
	IsLeader bool   `json:"IsLeader"`
	Leader   string `json:"Leader"`
	Servers  []struct {
		URL   string `json:"url"`
		Alive bool   `json:"alive"`
	} `json:"servers"`
	Volumes []struct {
		ID       uint32   `json:"id"`
		Replicas []string `json:"replicas"`
		Writable bool     `json:"writable"`
	} `json:"volumes"`
}

// GetJSON GETs url and decodes a JSON answer into v; non-2xx is an error.
func (c *Cluster) GetJSON(url string, v any) error {
	resp, err := c.Client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

// LeaderStatus returns the cluster status as the current leader reports it.
func (c *Cluster) LeaderStatus() (*Proc, *Status, error) {
	var errs []string
	for _, m := range c.Masters {
		if !m.Running() {
			continue
		}
		var st Status
		if err := c.GetJSON(c.URL(m.HTTP, "/cluster/status"), &st); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if st.IsLeader {
			return m, &st, nil
		}
	}
	return nil, nil, fmt.Errorf("no leader among running masters: %s", strings.Join(errs, "; "))
}

// WaitLeader waits (generously) for a master leader and returns it.
func (c *Cluster) WaitLeader(t testing.TB) *Proc {
	t.Helper()
	var leader *Proc
	testutil.WaitFor(t, 60*time.Second, "a master leader", func() error {
		m, _, err := c.LeaderStatus()
		leader = m
		return err
	})
	return leader
}

// WaitVolumesRegistered waits until the leader sees every running volume
// server alive.
func (c *Cluster) WaitVolumesRegistered(t testing.TB) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "volume servers registered and alive", func() error {
		_, st, err := c.LeaderStatus()
		if err != nil {
			return err
		}
		alive := map[string]bool{}
		for _, s := range st.Servers {
			alive[s.URL] = s.Alive
		}
		for _, v := range c.Volumes {
			if !v.Running() {
				continue
			}
			if !alive[v.HTTP] {
				return fmt.Errorf("%s not alive at the master", v.HTTP)
			}
			var ready map[string]string
			if err := c.GetJSON(c.URL(v.HTTP, "/readyz"), &ready); err != nil {
				return err
			}
		}
		return nil
	})
}

// Assignment is a /dir/assign answer.
type Assignment struct {
	Fid   string `json:"fid"`
	URL   string `json:"url"`
	Count int    `json:"count"`
	Error string `json:"error"`
}

// Assign asks the running masters in turn for a file id.
func (c *Cluster) Assign(query string) (Assignment, error) {
	var errs []string
	for _, m := range c.Masters {
		if !m.Running() {
			continue
		}
		var a Assignment
		err := c.GetJSON(c.URL(m.HTTP, "/dir/assign?"+query), &a)
		if err == nil && a.Fid != "" {
			return a, nil
		}
		errs = append(errs, fmt.Sprint(err))
	}
	return Assignment{}, errors.New(strings.Join(errs, "; "))
}

// Put writes data at fid on the volume server url; nil only for a 201.
func (c *Cluster) Put(url, fid string, data []byte) error {
	req, _ := http.NewRequest(http.MethodPut, c.URL(url, "/"+fid), bytes.NewReader(data))
	resp, err := c.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return &HTTPError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	}
	return nil
}

// Get reads fid from the volume server url.
func (c *Cluster) Get(url, fid string) ([]byte, error) {
	resp, err := c.Client.Get(c.URL(url, "/"+fid))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	}
	return body, nil
}

// HTTPError is a non-success HTTP answer.
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// Lookup returns the locations of a volume from the leader.
func (c *Cluster) Lookup(vid string) ([]string, error) {
	var errs []string
	for _, m := range c.Masters {
		if !m.Running() {
			continue
		}
		var lr struct {
			Locations []struct {
				URL string `json:"url"`
			} `json:"locations"`
		}
		if err := c.GetJSON(c.URL(m.HTTP, "/dir/lookup?volumeId="+vid), &lr); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var out []string
		for _, l := range lr.Locations {
			out = append(out, l.URL)
		}
		return out, nil
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

// Mount is a `cairn mount` process and its mount point.
type Mount struct {
	*Proc
	Point string
}

// StartMount starts `cairn mount` of the filer subtree root (with extra
// flags) and waits until the mount point is a live FUSE mount. The mount is
// killed and lazily unmounted at cleanup.
func (c *Cluster) StartMount(t testing.TB, root string, extra ...string) *Mount {
	t.Helper()
	if len(c.Filers) == 0 {
		t.Fatal("testcluster: a mount needs a filer")
	}
	point := t.TempDir()
	args := []string{"mount", "--filer", strings.Join(c.FilerAddrs(), ","), "--dir", point, "--root", root}
	if c.ClientFile != "" {
		args = append(args, "--security", c.ClientFile)
	}
	args = append(args, extra...)
	m := &Mount{Proc: &Proc{Name: "mount" + filepath.Base(point), Dir: point, bin: c.Filers[0].bin,
		log: point + ".log", args: args}, Point: point}
	t.Cleanup(func() {
		m.Kill()
		for range 8 { // dead mounts may be stacked
			if exec.Command("fusermount3", "-u", "-z", point).Run() != nil {
				break
			}
		}
		if t.Failed() {
			t.Logf("---- log of %s\n%s", m.Name, m.Log())
		}
	})
	m.Start(t)
	m.WaitMounted(t)
	return m
}

// WaitMounted waits until the mount point is served by a running mount.
func (m *Mount) WaitMounted(t testing.TB) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "mount "+m.Point+" to be live", func() error {
		if !m.Running() {
			return errors.New("mount process exited:\n" + m.Log())
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(m.Point, &st); err != nil {
			return err
		}
		if st.Type != 0x65735546 { // FUSE_SUPER_MAGIC
			return fmt.Errorf("%s is not a FUSE mount yet", m.Point)
		}
		return nil
	})
}

// initSecurity runs `cairn security init` for hosts in dir and makes the
// cluster's Client speak mutual TLS with the client certificate.
func (c *Cluster) initSecurity(t testing.TB, bin, dir string, hosts []string) {
	t.Helper()
	out, err := exec.Command(bin, "security", "init", "--dir", dir, "--hosts", strings.Join(hosts, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("testcluster: security init: %v\n%s", err, out)
	}
	c.SecDir = dir
	c.SecFile = filepath.Join(dir, security.FileName)
	c.ClientFile = filepath.Join(dir, security.ClientFileName)
	if c.ClientSec, err = security.LoadFile(c.ClientFile, security.RoleClient); err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	c.Client = httpx.Client(c.ClientSec, 30*time.Second)
	c.scheme = "https"
}

// Signal sends sig to the process if it is running (SIGHUP makes a cairn
// process reload its certificates).
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}
