package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

func certSerial(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestCertificateRotation renews every certificate of a running `cairn
// server --security` (same CA, new leaves) and sends it SIGHUP while a
// client keeps writing through the filer: no write fails beyond one retry,
// and afterwards every server presents its new certificate.
func TestCertificateRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real process; skipped with -short")
	}
	ip, file, cmd := startSecureServer(t)
	dir := filepath.Dir(file)
	client, err := security.LoadFile(file, security.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: client.ClientTLS()}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	filer := "https://" + net.JoinHostPort(ip, "8888")
	put := func(name string) error {
		req, _ := http.NewRequest(http.MethodPut, filer+"/rot/"+name, bytes.NewReader([]byte(name)))
		resp, err := c.Do(req)
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
	testutil.WaitFor(t, 60*time.Second, "a write through the secured filer", func() error { return put("first") })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	writes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("f%d", i)
			if err := put(name); err != nil {
				if err2 := put(name); err2 != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("%s: %v, then %v", name, err, err2))
					mu.Unlock()
				}
			}
			mu.Lock()
			writes++
			mu.Unlock()
			tr.CloseIdleConnections() // new handshakes throughout
		}
	}()

	time.Sleep(300 * time.Millisecond)
	old := map[string]string{}
	for _, role := range []string{security.RoleMaster, security.RoleVolume, security.RoleFiler, security.RoleClient} {
		old[role] = certSerial(t, filepath.Join(dir, role+".pem"))
		if err := security.Renew(dir, role, []string{ip}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	peer := func(port string) (string, error) {
		conn, err := tls.Dial("tcp", net.JoinHostPort(ip, port), client.ClientTLS())
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	for role, port := range map[string]string{security.RoleMaster: "9333", security.RoleVolume: "18080", security.RoleFiler: "18888"} {
		want := certSerial(t, filepath.Join(dir, role+".pem"))
		testutil.WaitFor(t, 10*time.Second, role+" presents its renewed certificate", func() error {
			got, err := peer(port)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("serial %s, want %s (old %s)", got, want, old[role])
			}
			return nil
		})
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, err := range failed {
		t.Error(err)
	}
	if writes < 5 {
		t.Errorf("only %d writes during the rotation", writes)
	}
	// Data written before and during the rotation is readable after it.
	resp, err := c.Get(filer + "/rot/first")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "first" {
		t.Fatalf("read after rotation: %q", b)
	}
}
