package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// The cluster every test of this package shares: one master, two volume
// servers in one rack, one filer, replication 001 (two copies). Starting it
// once keeps the package's tests fast; tests use their own paths and
// volumes, and a test that stops a process starts it again.
var (
	clusterOnce sync.Once
	shared      *testcluster.Cluster
	sharedTB    *mainTB
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedTB != nil {
		sharedTB.cleanup()
	}
	os.Exit(code)
}

// mainTB lets testcluster run outside one test: its cleanups run after all
// tests, and a fatal error fails the test that first asked for the cluster.
type mainTB struct {
	testing.TB // the test that started the cluster, for logging
	mu         sync.Mutex
	cleanups   []func()
	dirs       []string
}

func (m *mainTB) Helper()          {}
func (m *mainTB) Cleanup(f func()) { m.mu.Lock(); m.cleanups = append(m.cleanups, f); m.mu.Unlock() }
func (m *mainTB) Failed() bool     { return false }
func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "cairn-shell-test-")
	if err != nil {
		m.TB.Fatal(err)
	}
	m.dirs = append(m.dirs, d)
	return d
}
func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	for _, d := range m.dirs {
		os.RemoveAll(d)
	}
}

// cluster returns the shared cluster, starting it on first use.
func cluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	clusterOnce.Do(func() {
		sharedTB = &mainTB{TB: t}
		c := testcluster.Start(sharedTB, testcluster.Options{Masters: 1, Volumes: 2, Filers: 1, Replication: "001"})
		// A new master leader waits a few pulses before handing out file
		// ids; wait until a write through the filer works.
		testutil.WaitFor(sharedTB, 60*time.Second, "a write through the filer", func() error {
			req, _ := http.NewRequest(http.MethodPut, "http://"+c.Filers[0].HTTP+"/ready", strings.NewReader("ready"))
			resp, err := c.Client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				body, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("%d %s", resp.StatusCode, body)
			}
			return nil
		})
		shared = c
	})
	if shared == nil {
		t.Fatal("the shared test cluster failed to start (see the first test's log)")
	}
	return shared
}

// runShell runs the shell against the shared cluster with args.
func runShell(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := cluster(t)
	var out, errb bytes.Buffer
	full := append([]string{"--master", c.Masters[0].HTTP, "--filer", strings.Join(c.FilerAddrs(), ",")}, args...)
	code = Main(context.Background(), full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// mustRun runs one command with -c and fails the test unless it succeeds.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := runShell(t, args...)
	if code != 0 {
		t.Fatalf("shell %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// mustJSON runs one command with -o json and decodes its output into v.
func mustJSON(t *testing.T, v any, command string) {
	t.Helper()
	out := mustRun(t, "-o", "json", "-y", "-c", command)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: output is not the expected JSON: %v\n%s", command, err, out)
	}
}

// putFile stores data at path through the filer's HTTP API.
func putFile(t *testing.T, path string, data []byte) {
	t.Helper()
	c := cluster(t)
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Filers[0].HTTP+path, bytes.NewReader(data))
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, body)
	}
}

// filerClient returns a filer client for test setup.
func filerClient(t *testing.T) *filer.Client {
	t.Helper()
	fc := filer.NewClient(cluster(t).FilerAddrs(), nil)
	t.Cleanup(func() { fc.Close() })
	return fc
}

func TestSplitLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"", "[]"},
		{"fs.ls /a", "[[fs.ls /a]]"},
		{"  fs.ls -l /a ; fs.du /b;;", "[[fs.ls -l /a] [fs.du /b]]"},
		{`fs.cat "/a b/c\"d"`, `[[fs.cat /a b/c"d]]`},
		{`fs.cat '/x;y' # comment; fs.rm /`, "[[fs.cat /x;y]]"},
		{`fs.cat a\ b`, "[[fs.cat a b]]"},
		{`fs.cat a#b`, "[[fs.cat a#b]]"},
	} {
		got, err := splitLine(tc.in)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("splitLine(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := splitLine(`fs.cat "/a`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestParseArgsInterleaved(t *testing.T) {
	c := registry["quota.set"]
	fs, r := c.flagSet(io.Discard)
	pos, err := parseArgs(fs, []string{"/q", "-bytes", "10M", "--inodes", "5", "--", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	q := r.(*quotaSet)
	if fmt.Sprint(pos) != "[/q -x]" || q.bytes != "10M" || q.inodes != "5" {
		t.Fatalf("got %v bytes=%q inodes=%q", pos, q.bytes, q.inodes)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, n := range commandNames() {
		c := registry[n]
		if c.Summary == "" || c.New == nil {
			t.Errorf("%s: missing summary or constructor", n)
		}
		var out bytes.Buffer
		env := &Env{Out: &out, Err: io.Discard}
		if err := help(env, []string{n}); err != nil || !strings.Contains(out.String(), "Usage: "+n) {
			t.Errorf("help %s: %v\n%s", n, err, out.String())
		}
	}
}

func TestMainWithoutCluster(t *testing.T) {
	var out, errb bytes.Buffer
	// Nothing listens on these addresses: only commands that need no
	// server may succeed.
	base := []string{"--master", "127.0.0.1:1", "--filer", ""}
	if code := Main(context.Background(), append(base, "-c", "help; help fs.ls"), nil, &out, &errb); code != 0 {
		t.Fatalf("help: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "volume.scrub") || !strings.Contains(out.String(), "long listing") {
		t.Fatalf("help output lacks commands or flags:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main(context.Background(), append(base, "-c", "fs.lss /"), nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "did you mean fs.ls") {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := Main(context.Background(), append(base, "-o", "json", "-c", "fs.ls /"), nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--filer") {
		t.Fatalf("fs.ls without a filer: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main(context.Background(), append(base, "-o", "json", "-c", "fs.ls"), nil, &out, &errb); code != 1 {
		t.Fatalf("fs.ls without a path: exit %d", code)
	}
	var e map[string]string
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e["command"] != "fs.ls" || e["error"] == "" {
		t.Fatalf("JSON error output: %v %q", err, out.String())
	}
	if code := Main(context.Background(), []string{"-o", "yaml"}, nil, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad -o: exit %d, want 2", code)
	}
	// Commands from a pipe, one line each; a failure makes the status 1.
	out.Reset()
	if code := Main(context.Background(), base, strings.NewReader("help\nnosuch\n"), &out, io.Discard); code != 1 || !strings.Contains(out.String(), "fs.du") {
		t.Fatalf("script from stdin: exit %d\n%s", code, out.String())
	}
}

func TestConfirm(t *testing.T) {
	env := &Env{Out: io.Discard, Err: io.Discard}
	if err := env.Confirm("remove /x"); err == nil || !strings.Contains(err.Error(), "-y") {
		t.Fatalf("no terminal: %v, want a refusal naming -y", err)
	}
	for ans, ok := range map[string]bool{"y\n": true, "YES": true, "n": false, "": false} {
		env.Ask = func(string) (string, error) { return ans, nil }
		if err := env.Confirm("remove /x"); (err == nil) != ok {
			t.Errorf("answer %q: %v", ans, err)
		}
	}
	env.Ask, env.Yes = nil, true
	if err := env.Confirm("remove /x"); err != nil {
		t.Fatalf("-y: %v", err)
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "1048576": 1 << 20, "512M": 512 << 20, "10GiB": 10 << 30, "2k": 2048, "1TB": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5G", "99999999999P"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	if got := humanBytes(1536); got != "1.5 KiB" {
		t.Errorf("humanBytes(1536) = %q", got)
	}
	if got := modeString(0o40755); got != "drwxr-xr-x" {
		t.Errorf("modeString(dir 755) = %q", got)
	}
	if got := modeString(0o120777); got != "lrwxrwxrwx" {
		t.Errorf("modeString(symlink) = %q", got)
	}
}

// fresh removes dir (if present) so a test starts from an empty tree, also
// when run more than once (-count).
func fresh(t *testing.T, dir string) {
	t.Helper()
	c := cluster(t)
	req, _ := http.NewRequest(http.MethodDelete, "http://"+c.Filers[0].HTTP+dir+"?recursive=true", nil)
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE %s: %d", dir, resp.StatusCode)
	}
}

var runSeq atomic.Int64

// unique returns name with a suffix not used before in this process.
func unique(name string) string { return fmt.Sprintf("%s%d", name, runSeq.Add(1)) }
