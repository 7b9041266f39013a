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
)

// ErrConfig is wrapped by every error loading security material.
var ErrConfig = errors.New("security: bad configuration")

// Config is one component's view of cluster security.
type Config struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// AllowedNames, when not empty, lists the client certificate common names
	// (or DNS SANs) a server accepts.
	AllowedNames []string

	ca   *x509.CertPool
	cert tls.Certificate
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
	c.cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: certificate %s / key %s: %w", ErrConfig, c.CertFile, c.KeyFile, err)
	}
	return nil
}

// ServerTLS returns the server-side TLS config (mutual TLS), or nil for plaintext.
func (c *Config) ServerTLS() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS12,
		Certificates:          []tls.Certificate{c.cert},
		ClientCAs:             c.ca,
		ClientAuth:            tls.RequireAndVerifyClientCert,
		VerifyPeerCertificate: c.verifyAllowed,
	}
}

// ClientTLS returns the client-side TLS config, or nil for plaintext.
func (c *Config) ClientTLS() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.ca,
	}
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
