package security

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInitAndMutualTLS generates a cluster's material and checks that a
// server with it accepts a client of the same CA, and refuses a client
// without a certificate, one from another CA and one whose name is not
// allowed.
func TestInitAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	path, err := Init(dir, []string{"10.1.2.3", "node1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, nil, time.Hour); !errors.Is(err, ErrConfig) {
		t.Fatalf("second init in the same directory: %v, want ErrConfig", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "ca-key.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v", fi.Mode().Perm())
	}
	server, err := LoadFile(path, RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	client, err := LoadFile(path, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	otherPath, err := Init(filepath.Join(t.TempDir(), "other"), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := LoadFile(otherPath, RoleClient)
	if err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	server.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }),
		TLSConfig: server.ServerTLS(), ErrorLog: nil}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	url := "https://" + ln.Addr().String() + "/"
	get := func(cfg *tls.Config) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(client.ClientTLS()); err != nil {
		t.Fatalf("client of the cluster CA refused: %v", err)
	}
	noCert := client.ClientTLS()
	noCert.Certificates = nil
	if err := get(noCert); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	waitLog(t, &logs, "presented no certificate")
	foreignCfg := foreign.ClientTLS()
	foreignCfg.RootCAs = client.ClientTLS().RootCAs // trusts the server, but its own cert is foreign
	if err := get(foreignCfg); err == nil {
		t.Fatal("client with a certificate of another CA accepted")
	}
	waitLog(t, &logs, "is not signed by this cluster's CA")
	server.AllowedNames = []string{"master", "filer"}
	if err := get(client.ClientTLS()); err == nil {
		t.Fatal("client whose name is not allowed accepted")
	}
	waitLog(t, &logs, `name \"client\" is not in allowed_names`)
	if n := strings.Count(logs.String(), "refused a TLS client"); n != 3 {
		t.Errorf("%d refusal log lines, want 3:\n%s", n, logs.String())
	}
	if _, err := LoadFile(path, "nobody"); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown role: %v", err)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("ca = \"ca.pem\"\ncolour = \"blue\"\n"), 0o600)
	if _, err := LoadFile(bad, RoleMaster); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown setting: %v, want an error naming it", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits for a "refused a TLS client" line containing want (the
// server logs after the client has seen the refusal).
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(line, "refused a TLS client") && strings.Contains(line, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal log line with %q:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
