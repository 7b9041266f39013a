package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestTLSCluster runs three masters, three volume servers and three filers
// as real processes with --security (material from `cairn security init`
// for their addresses) and a real FUSE mount with the client-only
// client.toml. A workload through the mount writes, fsyncs, reads back and
// lists files. Then three clients are refused by every server, each with a
// log line on the refusing server naming the reason, and nothing changes:
// not the namespace, not a volume server's needle count. Last, the CA is
// rotated (rotate-ca begin, issue, finish, SIGHUP to every process after
// each step) while the mount and an HTTP client keep writing: no write
// fails beyond one retry, and the old CA's certificates are refused after.
func TestTLSCluster(t *testing.T) {
	needApps(t, "fuse3", "fusermount3")
	c := testcluster.Start(t, testcluster.Options{Masters: 3, Volumes: 3, Filers: 3, Replication: "001", Security: true})
	m := c.StartMount(t, "/")

	// The workload: files written and fsynced through the mount, read back
	// and listed.
	dir := filepath.Join(m.Point, "tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("f%02d", i)
		data := bytes.Repeat([]byte(name), 1000*(i+1))
		writeSync(t, filepath.Join(dir, name), data)
		want[name] = data
	}
	checkFiles(t, dir, want)

	t.Run("refused clients change nothing", func(t *testing.T) { testRefusedClients(t, c) })
	t.Run("CA rotation under load", func(t *testing.T) { testCARotation(t, c, m, dir) })
	checkFiles(t, dir, want)
}

// writeSync writes data to a new file, fsyncs and closes it.
func writeSync(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := writeSyncErr(path, data); err != nil {
		t.Fatal(err)
	}
}

func writeSyncErr(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkFiles checks that dir holds the files of want, with their bytes
// (and possibly more files).
func checkFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	for name, data := range want {
		if !slices.Contains(names, name) {
			t.Errorf("listing of %s lacks %s", dir, name)
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("read back %s: %v", name, err)
		} else if !bytes.Equal(got, data) {
			t.Errorf("read back %s: %d bytes, want %d, not the bytes written", name, len(got), len(data))
		}
	}
}

// clusterState is what a refused client must not change: every path of
// the namespace with its size, as the filer leader lists it, and each
// volume server's live needle count.
func clusterState(t *testing.T, c *testcluster.Cluster) (ns []string, needles map[string]uint64) {
	t.Helper()
	leader := c.WaitFilerLeader(t)
	var walk func(p string)
	walk = func(p string) {
		var l struct {
			Entries []struct {
				FullPath string
				IsDir    bool `json:"IsDirectory"`
				FileSize uint64
			}
		}
		req, _ := http.NewRequest(http.MethodGet, c.URL(leader.HTTP, p+"?limit=10000"), nil)
		req.Header.Set("Accept", "application/json")
		resp, err := c.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("list %s: %v", p, err)
		}
		for _, e := range l.Entries {
			ns = append(ns, fmt.Sprintf("%s %d", e.FullPath, e.FileSize))
			if e.IsDir {
				walk(e.FullPath + "/")
			}
		}
	}
	walk("/")
	needles = map[string]uint64{}
	for _, v := range c.Volumes {
		var st struct {
			Volumes []struct {
				NeedleCount uint64 `json:"needle_count"`
			} `json:"volumes"`
		}
		if err := c.GetJSON(c.URL(v.HTTP, "/status"), &st); err != nil {
			t.Fatal(err)
		}
		for _, vol := range st.Volumes {
			needles[v.HTTP] += vol.NeedleCount
		}
	}
	return ns, needles
}

// testRefusedClients: a client without a certificate, one with a
// certificate from another CA and one with a certificate of the cluster's
// CA for a name outside allowed_names try writes on every server's HTTP
// port, a filer command on every filer's gRPC port, and a handshake on
// every Raft port.
func testRefusedClients(t *testing.T, c *testcluster.Cluster) {
	nsBefore, needlesBefore := clusterState(t, c)
	if len(nsBefore) < 20 {
		t.Fatalf("namespace before: %v", nsBefore)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := security.Init(other, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	noCert := c.ClientSec.ClientTLS()
	noCert.Certificates = nil
	clients := []struct {
		name, reason string
		cfg          *tls.Config
	}{
		{"no certificate", "presented no certificate", noCert},
		{"another CA", "is not signed by this cluster's CA",
			c.IssueTLS(t, "client", filepath.Join(other, "ca.pem"), filepath.Join(other, "ca-key.pem"))},
		{"name not allowed", "is not in allowed_names",
			c.IssueTLS(t, "intruder", filepath.Join(c.SecDir, "ca.pem"), filepath.Join(c.SecDir, "ca-key.pem"))},
	}
	for _, bad := range clients {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: bad.cfg}, Timeout: 10 * time.Second}
		try := func(method, url string, body []byte) {
			req, _ := http.NewRequest(method, url, bytes.NewReader(body))
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Errorf("client with %s: %s %s answered %d, want a refused handshake", bad.name, method, url, resp.StatusCode)
			}
		}
		for _, f := range c.Filers {
			try(http.MethodPut, c.URL(f.HTTP, "/tls/intruder.txt"), []byte("x"))
			grpcAddr, _ := rpc.GRPCAddr(f.HTTP)
			if err := grpcCreate(grpcAddr, bad.cfg); err == nil {
				t.Errorf("client with %s: gRPC Create on filer %s succeeded", bad.name, f.HTTP)
			}
			waitLogLine(t, f, "refused a TLS client", bad.reason, "local="+grpcAddr)
		}
		for _, mp := range c.Masters {
			try(http.MethodGet, c.URL(mp.HTTP, "/dir/assign"), nil)
		}
		for _, v := range c.Volumes {
			try(http.MethodPut, c.URL(v.HTTP, "/1,01637037d6"), []byte("x"))
		}
		// The Raft ports of masters and filers refuse them too.
		for _, p := range append(append([]*testcluster.Proc{}, c.Masters...), c.Filers...) {
			raftAddr, _ := rpc.RaftAddr(p.HTTP)
			if _, err := peerIssuer(raftAddr, bad.cfg); err == nil {
				t.Errorf("client with %s: handshake with the Raft port of %s accepted", bad.name, p.Name)
			}
			waitLogLine(t, p, "refused a TLS client", bad.reason, "local="+raftAddr)
		}
		// Every server logged the refusal, with the reason.
		for _, p := range c.All() {
			waitLogLine(t, p, "refused a TLS client", bad.reason, "local="+p.HTTP)
		}
	}
	nsAfter, needlesAfter := clusterState(t, c)
	if !slices.Equal(nsBefore, nsAfter) {
		t.Errorf("namespace changed by refused clients:\nbefore %v\nafter  %v", nsBefore, nsAfter)
	}
	for v, n := range needlesBefore {
		if needlesAfter[v] != n {
			t.Errorf("volume server %s: %d needles before the refused clients, %d after", v, n, needlesAfter[v])
		}
	}
}

// grpcCreate sends a filer Create command over gRPC with cfg.
func grpcCreate(addr string, cfg *tls.Config) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	b, err := (&filer.Command{ClientID: "intruder", Seq: 1, Op: &filer.Create{Parent: filer.RootIno, Name: "intruder-grpc", Mode: 0o644}}).Encode()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pb.NewFilerClient(conn).Apply(ctx, &pb.FilerApplyRequest{Command: b})
	return err
}

// waitLogLine waits for a line of p's log holding every one of parts.
func waitLogLine(t *testing.T, p *testcluster.Proc, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if countLogLines(p, parts...) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s logged no line with %q", p.Name, parts)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countLogLines(p *testcluster.Proc, parts ...string) int {
	n := 0
	for line := range strings.SplitSeq(p.Log(), "\n") {
		all := true
		for _, s := range parts {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// peerIssuer returns the issuer of the certificate the server at addr
// presents.
func peerIssuer(addr string, cfg *tls.Config) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// With TLS 1.3 the server's verdict on our certificate comes after the
	// handshake: wait for a frame or an alert. An HTTP server sends
	// nothing unasked, so a read timeout means accepted.
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return "", err
	}
	return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName, nil
}

// testCARotation rotates the cluster's CA with `cairn security rotate-ca`
// while the mount and an HTTP client write, sending SIGHUP to every
// process (the mount too) after each step.
func testCARotation(t *testing.T, c *testcluster.Cluster, m *testcluster.Mount, dir string) {
	bin := testcluster.Binary(t)
	// The old CA, to make a certificate the cluster must refuse at the end.
	oldCA := t.TempDir()
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		b, err := os.ReadFile(filepath.Join(c.SecDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(oldCA, f), b, 0o600)
	}
	leader := c.WaitFilerLeader(t)
	tr := c.Client.Transport.(*http.Transport)
	put := func(name string, data []byte) error {
		req, _ := http.NewRequest(http.MethodPut, c.URL(leader.HTTP, "/tls/"+name), bytes.NewReader(data))
		resp, err := c.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}

	type result struct {
		name string
		data []byte
		err  error
	}
	stop := make(chan struct{})
	results := make(chan result, 1024)
	writer := func(kind string, write func(name string, data []byte) error) {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("%s-%04d", kind, i)
			data := bytes.Repeat([]byte(name), 200+i)
			err := write(name, data)
			if err != nil {
				if err2 := write(name, data); err2 != nil {
					err = fmt.Errorf("%w, then on retry: %w", err, err2)
				} else {
					err = nil
				}
			}
			results <- result{name, data, err}
			if kind == "http" {
				tr.CloseIdleConnections() // new handshakes throughout
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		writer("mount", func(name string, data []byte) error { return writeSyncErr(filepath.Join(dir, name), data) })
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		writer("http", put)
	}()
	var got []result
	waitWrites := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for start := len(got); len(got) < start+n; {
			select {
			case r := <-results:
				got = append(got, r)
			case <-time.After(time.Until(deadline)):
				t.Fatalf("%s: %d writes in 60s, want %d", what, len(got)-start, n)
			}
		}
	}
	waitWrites(4, "before the rotation")

	procs := append(c.All(), m.Proc)
	for i, step := range []string{"begin", "issue", "finish"} {
		if out, err := exec.Command(bin, "security", "rotate-ca", step, "--dir", c.SecDir).CombinedOutput(); err != nil {
			t.Fatalf("rotate-ca %s: %v\n%s", step, err, out)
		}
		for _, p := range procs {
			if err := p.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range procs {
			testutil.WaitFor(t, 30*time.Second, p.Name+" reloads after rotate-ca "+step, func() error {
				if n := countLogLines(p, "reloaded the TLS certificate and CA", "SIGHUP"); n < i+1 {
					return fmt.Errorf("%d reloads on SIGHUP logged, want %d", n, i+1)
				}
				return nil
			})
		}
		if err := c.ClientSec.Reload(); err != nil {
			t.Fatal(err)
		}
		// New handshakes with every server, on its HTTP and gRPC ports,
		// work with the reloaded client.
		for _, p := range c.All() {
			g, _ := rpc.GRPCAddr(p.HTTP)
			for _, addr := range []string{p.HTTP, g} {
				cfg := c.ClientSec.ClientTLS()
				if addr == g {
					cfg.NextProtos = []string{"h2"} // gRPC servers insist on it
				}
				if _, err := peerIssuer(addr, cfg); err != nil {
					t.Errorf("after rotate-ca %s: handshake with %s at %s: %v", step, p.Name, addr, err)
				}
			}
		}
		waitWrites(8, "after rotate-ca "+step)
	}
	close(stop)
	for range 2 {
		for {
			select {
			case r := <-results:
				got = append(got, r)
				continue
			case <-done:
			}
			break
		}
	}
	for len(results) > 0 {
		got = append(got, <-results)
	}

	// Every server presents a certificate of the new CA; a certificate of
	// the old CA is refused.
	for _, p := range c.All() {
		issuer, err := peerIssuer(p.HTTP, c.ClientSec.ClientTLS())
		if err != nil {
			t.Errorf("%s after the rotation: %v", p.Name, err)
		} else if issuer == "cairn cluster CA" {
			t.Errorf("%s still presents a certificate of the old CA", p.Name)
		}
	}
	oldClient := c.IssueTLS(t, "client", filepath.Join(oldCA, "ca.pem"), filepath.Join(oldCA, "ca-key.pem"))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: oldClient}, Timeout: 10 * time.Second}
	if resp, err := hc.Get(c.URL(leader.HTTP, "/tls/")); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate of the old CA was accepted after the rotation: %d", resp.StatusCode)
	}
	waitLogLine(t, leader, "refused a TLS client", "is not signed by this cluster's CA")

	// No write failed beyond one retry, and all of them read back.
	var failed int
	for _, r := range got {
		if r.err != nil {
			failed++
			t.Errorf("write %s during the rotation: %v", r.name, r.err)
		}
	}
	t.Logf("%d writes during the CA rotation, %d failed after a retry", len(got), failed)
	for _, r := range got {
		if r.err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, r.name))
		if err != nil || !bytes.Equal(b, r.data) {
			t.Errorf("%s after the rotation: %d bytes, %v; want the %d bytes written", r.name, len(b), err, len(r.data))
		}
	}
}
