package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCARotation runs the three steps of a CA rotation on a live TLS
// listener: at every point between two steps, with the server or the
// client reloaded first, handshakes succeed; after the last step a
// certificate of the old CA is refused; steps out of order are refused and
// change nothing.
func TestCARotation(t *testing.T) {
	dir := t.TempDir()
	path, err := Init(dir, []string{"node1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := FinishCARotation(dir); !errors.Is(err, ErrRotation) {
		t.Fatalf("finish without begin: %v, want ErrRotation", err)
	}
	server, err := LoadFile(path, RoleFiler)
	if err != nil {
		t.Fatal(err)
	}
	server.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	client, err := LoadFile(path, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the client's material as it was, to try after the rotation.
	oldDir := t.TempDir()
	for _, f := range []string{"ca.pem", "client.pem", "client-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		os.WriteFile(filepath.Join(oldDir, f), b, 0o600)
	}
	oldClient := &Config{CAFile: filepath.Join(oldDir, "ca.pem"), CertFile: filepath.Join(oldDir, "client.pem"), KeyFile: filepath.Join(oldDir, "client-key.pem")}
	if err := oldClient.Load(); err != nil {
		t.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("ok"))
			}()
		}
	}()
	dial := func(c *Config) error {
		cfg := c.ClientTLS()
		cfg.ServerName = "node1"
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// The server checks the client after the client's side of a TLS
		// 1.3 handshake is done: its verdict arrives with the first read.
		b := make([]byte, 2)
		_, err = io.ReadFull(conn, b)
		return err
	}
	// check reloads first, checks a handshake, reloads second, checks again.
	check := func(step string, first, second *Config) {
		t.Helper()
		if err := first.Reload(); err != nil {
			t.Fatalf("%s: reload: %v", step, err)
		}
		if err := dial(client); err != nil {
			t.Fatalf("%s: handshake with one side reloaded: %v", step, err)
		}
		if err := second.Reload(); err != nil {
			t.Fatalf("%s: reload: %v", step, err)
		}
		if err := dial(client); err != nil {
			t.Fatalf("%s: handshake with both sides reloaded: %v", step, err)
		}
	}
	check("before", server, client)

	if err := BeginCARotation(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := BeginCARotation(dir, time.Hour); !errors.Is(err, ErrRotation) {
		t.Fatalf("begin twice: %v, want ErrRotation", err)
	}
	if err := FinishCARotation(dir); !errors.Is(err, ErrRotation) {
		t.Fatalf("finish before issue: %v, want ErrRotation", err)
	}
	check("trust both", server, client)
	if err := IssueLeaves(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	check("new certificates", client, server)
	if got := client.Certificate().Leaf.Issuer.CommonName; got == "cairn cluster CA" {
		t.Fatalf("client certificate still from the old CA after issue")
	}
	if hosts := hostsOf(server.Certificate().Leaf); len(hosts) != 1 || hosts[0] != "node1" {
		t.Fatalf("new certificate valid for %v, want the old one's names [node1]", hosts)
	}
	if err := FinishCARotation(dir); err != nil {
		t.Fatal(err)
	}
	check("drop the old CA", server, client)
	if err := dial(oldClient); err == nil {
		t.Fatal("a certificate of the old CA was accepted after the rotation")
	}
	for _, f := range []string{nextCACertFile, nextCAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after finish: %v", f, err)
		}
	}
	// The directory is ready for the next renewal or rotation.
	if err := Renew(dir, RoleClient, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := dial(client); err != nil {
		t.Fatal(err)
	}
}

// TestClientOnlyFile: init writes a client file without server
// certificates or the signing key; clients load it, servers refuse it.
func TestClientOnlyFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(dir, ClientFileName)
	b, err := os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"signing_key", "[jwt]", "master-key.pem", "volume-key.pem", "filer-key.pem", "ca-key.pem"} {
		if contains(string(b), secret) {
			t.Errorf("%s names %q:\n%s", ClientFileName, secret, b)
		}
	}
	c, err := LoadFile(cf, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens != nil {
		t.Error("client-only file gave a token signer")
	}
	for _, role := range []string{RoleMaster, RoleVolume, RoleFiler} {
		_, err := LoadFile(cf, role)
		if !errors.Is(err, ErrConfig) || !contains(err.Error(), "client-only") {
			t.Errorf("%s with the client-only file: %v, want a client-only error", role, err)
		}
	}
	// A hand-made file missing a server's section is refused with a message
	// naming it.
	partial := filepath.Join(dir, "partial.toml")
	os.WriteFile(partial, []byte("ca = \"ca.pem\"\n[master]\ncert = \"master.pem\"\nkey = \"master-key.pem\"\n"), 0o600)
	if _, err := LoadFile(partial, RoleMaster); err != nil {
		t.Fatalf("master from a file with its section: %v", err)
	}
	if _, err := LoadFile(partial, RoleVolume); !errors.Is(err, ErrConfig) || !contains(err.Error(), "[volume]") {
		t.Errorf("volume from a file without [volume]: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestWatchFilesFollowsCA: a changed CA bundle is picked up by the file
// check alone, without SIGHUP.
func TestWatchFilesFollowsCA(t *testing.T) {
	dir := t.TempDir()
	path, err := Init(dir, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadFile(path, RoleVolume)
	if err != nil {
		t.Fatal(err)
	}
	before := c.caPool()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.WatchFiles(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	time.Sleep(50 * time.Millisecond) // let it record the files as they are
	if err := BeginCARotation(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	next, err := readCert(filepath.Join(dir, nextCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := c.caPool(); p != before {
			if _, err := next.Verify(x509.VerifyOptions{Roots: p}); err != nil {
				t.Fatalf("reloaded bundle does not trust the new CA: %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the CA bundle was not reloaded after ca.pem changed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
