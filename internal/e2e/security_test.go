package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestServerWithSecurity runs `cairn server --security` with the material
// of `cairn security init`: a client of the cluster works over mutual TLS;
// plaintext, a client without a certificate, one from another CA and one
// whose name is not allowed are refused, and nothing they sent is stored.
func TestServerWithSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real process; skipped with -short")
	}
	bin := testcluster.Binary(t)
	ip := testutil.LoopbackIP(t, 9333, 19333, 29333, 8080, 18080, 8888, 18888, 28888)
	secDir := filepath.Join(t.TempDir(), "sec")
	if out, err := exec.Command(bin, "security", "init", "--dir", secDir, "--hosts", ip).CombinedOutput(); err != nil {
		t.Fatalf("security init: %v\n%s", err, out)
	}
	file := filepath.Join(secDir, security.FileName)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "server.log"))
	cmd := exec.Command(bin, "server", "--dir", t.TempDir(), "--ip", ip, "--security", file)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("server log:\n%s", b)
		}
	})
	client, err := security.LoadFile(file, security.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	httpsClient := func(cfg *tls.Config) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	good := httpsClient(client.ClientTLS())
	filer := "https://" + net.JoinHostPort(ip, "8888")
	put := func(c *http.Client, url string, body []byte) (int, error) {
		req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	testutil.WaitFor(t, 60*time.Second, "a write through the secured filer", func() error {
		code, err := put(good, filer+"/secure/ok.txt", []byte("over mutual TLS"))
		if err != nil {
			return err
		}
		if code != 201 {
			return fmt.Errorf("HTTP %d", code)
		}
		return nil
	})
	resp, err := good.Get(filer + "/secure/ok.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "over mutual TLS" {
		t.Fatalf("read back %q", body)
	}

	// Refused clients. Each tries to write a file that must not appear.
	noCert := client.ClientTLS()
	noCert.Certificates = nil
	otherPath, err := security.Init(filepath.Join(t.TempDir(), "other"), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := security.LoadFile(otherPath, security.RoleClient)
	foreign := other.ClientTLS()
	foreign.RootCAs = client.ClientTLS().RootCAs
	// A security file of the same CA whose client section holds the filer's
	// certificate is fine; one for a name the cluster does not allow needs a
	// cluster that disallows it, so that case runs against the allow list
	// below with a name outside it.
	for name, c := range map[string]*http.Client{
		"no certificate": httpsClient(noCert),
		"another CA":     httpsClient(foreign),
	} {
		if code, err := put(c, filer+"/secure/"+strings.ReplaceAll(name, " ", "-"), []byte("x")); err == nil {
			t.Errorf("client with %s: write answered %d, want a refused handshake", name, code)
		}
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, err := put(plain, "http://"+net.JoinHostPort(ip, "8888")+"/secure/plain", []byte("x")); err == nil && code < 400 {
		t.Errorf("plaintext write answered %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, filer+"/secure/", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = good.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(list), `"FullPath"`) != 1 {
		t.Fatalf("refused clients changed the namespace: %s", list)
	}
	b, _ := os.ReadFile(logf.Name())
	if !strings.Contains(string(b), "TLS handshake error") {
		t.Errorf("no log line on the server for refused handshakes")
	}
}
