package raftutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// writeCerts creates a CA and one certificate for ips (used as server and
// client certificate) and returns a loaded security.Config.
func writeCerts(t *testing.T, ips []string) *security.Config {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "master"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sec := &security.Config{
		CAFile:   write("ca.pem", "CERTIFICATE", caDER),
		CertFile: write("cert.pem", "CERTIFICATE", der),
		KeyFile:  write("key.pem", "EC PRIVATE KEY", keyDER),
	}
	if err := sec.Load(); err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestThreeNodesTLS(t *testing.T) {
	var ips, ids []string
	for range 3 {
		ip := testutil.LoopbackIP(t, testPort, testPort+20000)
		ips = append(ips, ip)
		ids = append(ids, net.JoinHostPort(ip, strconv.Itoa(testPort)))
	}
	sec := writeCerts(t, ips)
	var ms []*member
	for _, id := range ids {
		m := &member{cfg: testConfig(t, id, ids)}
		m.cfg.Security = sec
		startMember(t, m)
		ms = append(ms, m)
	}
	leader := waitLeader(t, ms)
	ctx := t.Context()
	if _, err := leader.node.Apply(ctx, cmd("tls", "on")); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitValue(t, m, "tls", "on")
	}

	// A dialer holding a certificate from another CA is refused.
	addr := net.JoinHostPort(ips[0], strconv.Itoa(testPort+20000))
	stranger := &streamLayer{client: writeCerts(t, ips).ClientTLS()}
	if conn, err := stranger.Dial(raft.ServerAddress(addr), 5*time.Second); err == nil {
		conn.Close()
		t.Fatal("TLS handshake with a foreign CA succeeded")
	}
	// The group is unaffected.
	if _, err := leader.node.Apply(ctx, cmd("after", "stranger")); err != nil {
		t.Fatal(err)
	}
}
