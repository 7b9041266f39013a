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

// ClientFileName is the client-only security file Init writes next to
// FileName: the CA and the client certificate, without server certificates
// or the data-path signing key. Mounts, the CSI plugin and the shell need
// nothing more (they forward the tokens that the master hands out), so a
// client machine never holds a key that can mint tokens.
const ClientFileName = "client.toml"

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
	if err := encodeFile(&buf, f); err != nil {
		return "", err
	}
	if err := writeFile(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	cf := File{ClientOnly: true, CA: f.CA, AllowedNames: f.AllowedNames, Client: f.Client}
	buf.Reset()
	buf.WriteString("# cairn client security: mutual TLS for mounts, the CSI plugin and the shell.\n" +
		"# No server certificates and no signing key: servers refuse to start with it.\n")
	if err := encodeFile(&buf, cf); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, ClientFileName), buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// encodeFile writes f as TOML, leaving out the role sections and the
// [jwt] table it does not set.
func encodeFile(buf *bytes.Buffer, f File) error {
	top := struct {
		ClientOnly   bool     `toml:"client_only,omitempty"`
		CA           string   `toml:"ca"`
		AllowedNames []string `toml:"allowed_names"`
	}{f.ClientOnly, f.CA, f.AllowedNames}
	if err := toml.NewEncoder(buf).Encode(top); err != nil {
		return err
	}
	for _, role := range Roles {
		p, _ := f.pair(role)
		if p == (CertPair{}) {
			continue
		}
		fmt.Fprintf(buf, "\n[%s]\n", role)
		if err := toml.NewEncoder(buf).Encode(p); err != nil {
			return err
		}
	}
	if f.JWT != (JWTSettings{}) {
		buf.WriteString("\n[jwt]\n")
		return toml.NewEncoder(buf).Encode(f.JWT)
	}
	return nil
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
	if _, err := (&File{}).pair(role); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	ca, caKey, err := loadCA(dir, caCertFile, caKeyFile)
	if err != nil {
		return err
	}
	return issueInto(dir, role, ca, caKey, hosts, validity)
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
