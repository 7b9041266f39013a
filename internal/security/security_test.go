package security

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	foreignCfg := foreign.ClientTLS()
	foreignCfg.RootCAs = client.ClientTLS().RootCAs // trusts the server, but its own cert is foreign
	if err := get(foreignCfg); err == nil {
		t.Fatal("client with a certificate of another CA accepted")
	}
	server.AllowedNames = []string{"master", "filer"}
	if err := get(client.ClientTLS()); err == nil {
		t.Fatal("client whose name is not allowed accepted")
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
