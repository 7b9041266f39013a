// Package security holds the transport security settings shared by every
// component. A nil *Config means plaintext; every dialer and listener in cairn
// takes one, so turning mutual TLS on touches configuration, not call sites.
package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
)

// ErrConfig is wrapped by every error loading security material.
var ErrConfig = errors.New("security: bad configuration")

// Config is one component's view of cluster security. Its certificate and
// key can be swapped while servers and clients use it (Reload); the CA is
// read once, at Load.
type Config struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// AllowedNames, when not empty, lists the client certificate common names
	// (or DNS SANs) a server accepts.
	AllowedNames []string
	// Tokens signs and verifies data-path tokens; nil when the security
	// file has no [jwt] signing_key.
	Tokens *Tokens

	ca   *x509.CertPool
	cert atomic.Pointer[tls.Certificate] // the current certificate, swapped by Reload
}

// Load reads the CA, certificate and key named in c.
func (c *Config) Load() error {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return fmt.Errorf("%w: read CA %s: %w", ErrConfig, c.CAFile, err)
	}
	c.ca = x509.NewCertPool()
	if !c.ca.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%w: CA %s holds no PEM certificate", ErrConfig, c.CAFile)
	}
	return c.Reload()
}

// Reload reads the certificate and key again and, if they form a valid
// pair signed by the CA, makes new TLS handshakes (as server and as client)
// use them. Connections already open keep theirs. On error the previous
// certificate stays in use. Safe to call concurrently with handshakes.
func (c *Config) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: certificate %s / key %s: %w", ErrConfig, c.CertFile, c.KeyFile, err)
	}
	if c.ca != nil {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: c.ca, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fmt.Errorf("%w: certificate %s is not signed by the CA %s: %w", ErrConfig, c.CertFile, c.CAFile, err)
		}
	}
	c.cert.Store(&cert)
	return nil
}

// Certificate returns the certificate new handshakes present.
func (c *Config) Certificate() *tls.Certificate { return c.cert.Load() }

// DataTokens returns c.Tokens, or nil when c is nil.
func (c *Config) DataTokens() *Tokens {
	if c == nil {
		return nil
	}
	return c.Tokens
}

// ServerTLS returns the server-side TLS config (mutual TLS), or nil for
// plaintext. It presents whatever certificate Reload last loaded.
func (c *Config) ServerTLS() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS12,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil },
		ClientCAs:             c.ca,
		ClientAuth:            tls.RequireAndVerifyClientCert,
		VerifyPeerCertificate: c.verifyAllowed,
	}
}

// ClientTLS returns the client-side TLS config, or nil for plaintext. It
// presents whatever certificate Reload last loaded; clearing Certificates
// on the returned config makes it present none.
func (c *Config) ClientTLS() *tls.Config {
	if c == nil {
		return nil
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*c.cert.Load()},
		RootCAs:      c.ca,
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if len(cfg.Certificates) == 0 {
			return &tls.Certificate{}, nil
		}
		return c.cert.Load(), nil
	}
	return cfg
}

func (c *Config) verifyAllowed(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(c.AllowedNames) == 0 {
		return nil
	}
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		leaf := chain[0]
		if slices.Contains(c.AllowedNames, leaf.Subject.CommonName) {
			return nil
		}
		for _, n := range leaf.DNSNames {
			if slices.Contains(c.AllowedNames, n) {
				return nil
			}
		}
	}
	return errors.New("security: client certificate name is not in the allowed list")
}
