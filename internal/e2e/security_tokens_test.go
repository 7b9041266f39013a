package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// startSecureServer runs `cairn server --security` on a fresh loopback IP
// with the material of `cairn security init` (which includes a [jwt]
// signing key) and returns the IP, the security file and the process.
func startSecureServer(t *testing.T, extra ...string) (string, string, *exec.Cmd) {
	t.Helper()
	bin := testcluster.Binary(t)
	ip := testutil.LoopbackIP(t, 9333, 19333, 29333, 8080, 18080, 8888, 18888, 28888)
	secDir := filepath.Join(t.TempDir(), "sec")
	if out, err := exec.Command(bin, "security", "init", "--dir", secDir, "--hosts", ip).CombinedOutput(); err != nil {
		t.Fatalf("security init: %v\n%s", err, out)
	}
	file := filepath.Join(secDir, security.FileName)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "server.log"))
	args := append([]string{"server", "--dir", t.TempDir(), "--ip", ip, "--security", file}, extra...)
	cmd := exec.Command(bin, args...)
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
	return ip, file, cmd
}

// TestDataPathTokensEndToEnd assigns through a secured master: the assign
// carries a token, and a volume server refuses a write with no token, a
// forged one and an expired one (401, nothing stored) and takes the
// assign's.
func TestDataPathTokensEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real process; skipped with -short")
	}
	ip, file, _ := startSecureServer(t)
	sec, err := security.LoadFile(file, security.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	c := httpx.Client(sec, 10*time.Second)
	master := "https://" + net.JoinHostPort(ip, "9333")
	var a struct {
		Fid, URL, Auth string
	}
	testutil.WaitFor(t, 60*time.Second, "an assign from the secured master", func() error {
		resp, err := c.Get(master + "/dir/assign")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d %s", resp.StatusCode, b)
		}
		return json.Unmarshal(b, &a)
	})
	if a.Auth == "" {
		t.Fatalf("assign carries no token: %+v", a)
	}
	id, err := fid.Parse(a.Fid)
	if err != nil {
		t.Fatal(err)
	}
	put := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, "https://"+a.URL+"/"+a.Fid, bytes.NewReader([]byte("payload "+token)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	var f security.File
	if _, err := toml.DecodeFile(file, &f); err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(f.JWT.SigningKey)
	short, _ := security.NewTokens(key, time.Nanosecond, false)
	expired, _ := short.SignWrite(id, 1)
	other, _ := security.NewTokens([]byte("not the cluster key, but 32 byte"), time.Minute, false)
	forged, _ := other.SignWrite(id, 1)
	time.Sleep(3 * time.Second) // past the verifier's leeway
	for name, tok := range map[string]string{"no token": "", "forged token": forged, "expired token": expired} {
		if code, body := put(tok); code != http.StatusUnauthorized {
			t.Errorf("write with %s: %d %s, want 401", name, code, body)
		}
	}
	resp, err := c.Get("https://" + a.URL + "/" + a.Fid)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after refused writes the needle answers %d, want 404 (nothing stored)", resp.StatusCode)
	}
	if code, body := put(a.Auth); code != http.StatusCreated {
		t.Fatalf("write with the assign's token: %d %s", code, body)
	}

	// The filer signs its own delete tokens: a file deleted through it has
	// its needle deleted on the volume server by the filer's GC.
	filer := "https://" + net.JoinHostPort(ip, "8888")
	req, _ := http.NewRequest(http.MethodPut, filer+"/tok/gone.txt", bytes.NewReader([]byte("soon deleted")))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("write through the filer: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodDelete, filer+"/tok/gone.txt", nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, 30*time.Second, "the filer GC deleting the needle with its own token", func() error {
		resp, err := c.Get("https://" + a.URL + "/status")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st struct {
			Volumes []struct {
				DeletedCount uint64 `json:"deleted_count"`
			} `json:"volumes"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		for _, v := range st.Volumes {
			if v.DeletedCount > 0 {
				return nil
			}
		}
		return fmt.Errorf("no needle deleted yet: %+v", st)
	})
}
