package master

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// testSecurity creates a CA and one certificate valid for ips, used by every
// server and client of the test, and returns the loaded configuration.
func testSecurity(t *testing.T, ips []string) *security.Config {
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
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cairn"},
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

// TestClusterTLS runs masters and a volume server with mutual TLS on every
// hop: Raft, heartbeats, allocation, HTTP and gRPC forwarding.
func TestClusterTLS(t *testing.T) {
	peers := pickPeers(t, 3)
	volIP := testutil.LoopbackIP(t, testVolumePort, testVolumePort+10000)
	var ips []string
	for _, p := range peers {
		h, _, _ := net.SplitHostPort(p)
		ips = append(ips, h)
	}
	sec := testSecurity(t, append(ips, volIP))
	ms := runMasters(t, peers, func(c *Config) { c.Security = sec })
	leader := waitLeader(t, ms)
	startVolumeOn(t, volIP, peers, "", "", sec)

	follower := peers[0]
	if follower == leader.m.Addr() {
		follower = peers[1]
	}
	client := httpx.Client(sec, 20*time.Second)
	var a AssignJSON
	testutil.WaitFor(t, 20*time.Second, "assign over TLS via a follower", func() error {
		_, err := httpGetWith(client, "https://"+follower+"/dir/assign", &a)
		return err
	})
	id, err := fid.Parse(a.Fid)
	if err != nil {
		t.Fatal(err)
	}
	var lk LookupJSON
	if _, err := httpGetWith(client, "https://"+follower+"/dir/lookup?volumeId="+a.Fid, &lk); err != nil || len(lk.Locations) != 1 {
		t.Fatalf("lookup over TLS: %+v %v", lk, err)
	}
	// Plain HTTP is refused.
	if code, _ := httpGet("http://"+follower+"/dir/lookup?volumeId=1", nil); code == http.StatusOK {
		t.Fatal("plaintext request served")
	}

	pool := rpc.NewPool(sec)
	defer pool.Close()
	conn, err := pool.Conn(follower)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := pb.NewMasterClient(conn)
	if lr, err := c.Lookup(ctx, &pb.LookupRequest{VolumeId: id.Volume}); err != nil || len(lr.Locations) != 1 {
		t.Fatalf("gRPC lookup over TLS: %v %v", lr, err)
	}
	_, err = c.Lookup(ctx, &pb.LookupRequest{VolumeId: 4242})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown volume over gRPC: %v", err)
	}
}
