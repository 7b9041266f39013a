package security

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of a directory made by Init that CA rotation uses. During a
// rotation the next CA lives next to the current one until FinishCARotation
// makes it the only one.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	nextCACertFile = "ca-next.pem"
	nextCAKeyFile  = "ca-next-key.pem"
	oldCACertFile  = "ca-old.pem"
)

// ErrRotation is wrapped by a CA rotation step run out of order.
var ErrRotation = errors.New("security: CA rotation step out of order")

// CA rotation replaces a cluster's CA without stopping anything, in three
// steps; after each, the files are copied to every host and every process
// reloads them (SIGHUP, or its next file check):
//
//  1. BeginCARotation: a new CA is made and ca.pem becomes the bundle
//     old + new. Everyone now trusts both; everyone still presents a
//     certificate of the old CA.
//  2. IssueLeaves: every role gets a new certificate from the new CA.
//     Everyone presents it; peers accept it because they trust both CAs.
//  3. FinishCARotation: ca.pem becomes the new CA alone, and its key
//     replaces ca-key.pem. Certificates of the old CA are refused from now
//     on (the refusal is logged by the server that refused).
//
// A process only takes a new bundle together with a certificate it
// verifies (Config.Reload), so one that missed step 2 keeps trusting both
// CAs and says so in its log instead of locking itself out.

// BeginCARotation makes a new CA in dir (ca-next.pem, ca-next-key.pem) and
// rewrites ca.pem as the bundle of the current and the new CA.
func BeginCARotation(dir string, validity time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, nextCACertFile)); err == nil {
		return fmt.Errorf("%w: %s exists: a rotation is under way; run its next step (issue, then finish)", ErrRotation, filepath.Join(dir, nextCACertFile))
	}
	cur, _, err := loadCA(dir, caCertFile, caKeyFile)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-5 * time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "cairn cluster CA " + now.UTC().Format("2006-01-02 15:04")},
		NotBefore: now, NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a crash leaves no next CA without its key.
	if err := replaceFile(filepath.Join(dir, nextCAKeyFile), pemBytes("EC PRIVATE KEY", kder), 0o600); err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, nextCACertFile), pemBytes("CERTIFICATE", der), 0o644); err != nil {
		return err
	}
	bundle := append(pemBytes("CERTIFICATE", cur.Raw), pemBytes("CERTIFICATE", der)...)
	return replaceFile(filepath.Join(dir, caCertFile), bundle, 0o644)
}

// IssueLeaves gives every role of dir a new certificate and key, valid for
// the same names and addresses as its current one, signed by the next CA
// during a rotation (after BeginCARotation) and by the current CA
// otherwise (plain certificate renewal).
func IssueLeaves(dir string, validity time.Duration) error {
	certFile, keyFile := caCertFile, caKeyFile
	if _, err := os.Stat(filepath.Join(dir, nextCACertFile)); err == nil {
		certFile, keyFile = nextCACertFile, nextCAKeyFile
	}
	ca, caKey, err := loadCA(dir, certFile, keyFile)
	if err != nil {
		return err
	}
	for _, role := range Roles {
		cur, err := readCert(filepath.Join(dir, role+".pem"))
		if err != nil {
			return err
		}
		if err := issueInto(dir, role, ca, caKey, hostsOf(cur), validity); err != nil {
			return err
		}
	}
	return nil
}

// FinishCARotation makes the next CA the only one: ca.pem holds it alone
// and its key replaces ca-key.pem (the old CA certificate is kept as
// ca-old.pem). It refuses while any role's certificate is not yet from the
// next CA, since that role would be locked out.
func FinishCARotation(dir string) error {
	next, _, err := loadCA(dir, nextCACertFile, nextCAKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no rotation under way in %s (start one with begin)", ErrRotation, dir)
	}
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(next)
	for _, role := range Roles {
		leaf, err := readCert(filepath.Join(dir, role+".pem"))
		if err != nil {
			return err
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: the %s certificate is not from the new CA yet; issue new certificates first", ErrRotation, role)
		}
	}
	old, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, oldCACertFile), old, 0o644); err != nil {
		return err
	}
	nextKey, err := os.ReadFile(filepath.Join(dir, nextCAKeyFile))
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, caKeyFile), nextKey, 0o600); err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, caCertFile), pemBytes("CERTIFICATE", next.Raw), 0o644); err != nil {
		return err
	}
	// ca.pem and ca-key.pem are the new CA now; the next-CA files are spent.
	if err := os.Remove(filepath.Join(dir, nextCAKeyFile)); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, nextCACertFile))
}

// loadCA reads a CA certificate (the first of the file) and its key.
func loadCA(dir, certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, err := readCert(filepath.Join(dir, certFile))
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: this step needs the CA key: %w", ErrConfig, err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("%w: %s is not PEM", ErrConfig, filepath.Join(dir, keyFile))
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CA key %s: %w", ErrConfig, filepath.Join(dir, keyFile), err)
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s is not the key of %s", ErrConfig, keyFile, certFile)
	}
	return ca, key, nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return c, nil
}

// hostsOf returns the names and addresses a certificate is valid for,
// without those issueLeaf always adds.
func hostsOf(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		if n != c.Subject.CommonName && n != "localhost" {
			out = append(out, n)
		}
	}
	for _, ip := range c.IPAddresses {
		if !ip.Equal(net.IPv4(127, 0, 0, 1)) && !ip.Equal(net.IPv6loopback) {
			out = append(out, ip.String())
		}
	}
	return out
}

// issueInto issues role's certificate from ca and replaces its files in
// dir, the key first, each atomically.
func issueInto(dir, role string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, validity time.Duration) error {
	der, key, err := issueLeaf(ca, caKey, role, hosts, time.Now().Add(-5*time.Minute), validity)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, role+"-key.pem"), pemBytes("EC PRIVATE KEY", kder), 0o600); err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, role+".pem"), pemBytes("CERTIFICATE", der), 0o644)
}

func pemBytes(typ string, der []byte) []byte {
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}
