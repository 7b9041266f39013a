package security

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
)

// FileName is the security file Init writes.
const FileName = "security.toml"

// Init creates, in dir, a CA, one certificate per role valid for hosts (IP
// addresses or DNS names; 127.0.0.1 and localhost are always added) and a
// security file naming them, ready for every component. It refuses to
// overwrite anything. The CA key stays in dir; keep it offline.
func Init(dir string, hosts []string, validity time.Duration) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("%w: %s exists; choose an empty directory", ErrConfig, path)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now().Add(-5 * time.Minute)
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "cairn cluster CA"},
		NotBefore: now, NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return "", err
	}
	if err := writeKey(filepath.Join(dir, "ca-key.pem"), caKey); err != nil {
		return "", err
	}
	f := File{CA: "ca.pem", AllowedNames: Roles}
	for _, role := range Roles {
		der, key, err := issueLeaf(ca, caKey, role, hosts, now, validity)
		if err != nil {
			return "", err
		}
		pair := CertPair{Cert: role + ".pem", Key: role + "-key.pem"}
		if err := writePEM(filepath.Join(dir, pair.Cert), "CERTIFICATE", der, 0o644); err != nil {
			return "", err
		}
		if err := writeKey(filepath.Join(dir, pair.Key), key); err != nil {
			return "", err
		}
		switch role {
		case RoleMaster:
			f.Master = pair
		case RoleVolume:
			f.Volume = pair
		case RoleFiler:
			f.Filer = pair
		case RoleClient:
			f.Client = pair
		}
	}
	jwtKey := make([]byte, 32)
	if _, err := rand.Read(jwtKey); err != nil {
		return "", err
	}
	f.JWT.SigningKey = base64.StdEncoding.EncodeToString(jwtKey)
	var buf bytes.Buffer
	buf.WriteString("# cairn cluster security: mutual TLS between every component.\n" +
		"# Pass it to every command with --security; each picks its own section.\n")
	if err := toml.NewEncoder(&buf).Encode(f); err != nil {
		return "", err
	}
	if err := writeFile(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// issueLeaf creates a key and a certificate for role signed by the CA,
// valid for hosts (plus loopback and localhost) from notBefore on.
func issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, role string, hosts []string, notBefore time.Time, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: role},
		NotBefore: notBefore, NotAfter: notBefore.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{role, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// Renew issues a new certificate and key for role, signed by the CA that
// Init left in dir (ca.pem, ca-key.pem), and replaces <role>.pem and
// <role>-key.pem atomically (the key first). Running components pick them
// up on SIGHUP or at their next file check; see Config.Reload.
func Renew(dir, role string, hosts []string, validity time.Duration) error {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return fmt.Errorf("%w: renewing needs the CA key: %w", ErrConfig, err)
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return fmt.Errorf("%w: %s: CA certificate or key is not PEM", ErrConfig, dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("%w: CA certificate: %w", ErrConfig, err)
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("%w: CA key: %w", ErrConfig, err)
	}
	der, key, err := issueLeaf(ca, caKey, role, hosts, time.Now().Add(-5*time.Minute), validity)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, role+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, role+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// replaceFile writes b to a temporary file next to path, fsyncs it, renames
// it over path and fsyncs the directory.
func replaceFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := writeFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}
