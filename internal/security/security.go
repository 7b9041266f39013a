// Package security holds the transport security settings shared by every
// component. A nil *Config means plaintext; every dialer and listener in cairn
// takes one, so turning mutual TLS on touches configuration, not call sites.
package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
)

// ErrConfig is wrapped by every error loading security material.
var ErrConfig = errors.New("security: bad configuration")

// Config is one component's view of cluster security. Its CA bundle,
// certificate and key can be swapped while servers and clients use it
// (Reload), which is how certificates and the CA itself rotate without a
// restart (docs/security.md).
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
	// Logger receives the refused TLS clients (slog.Default when nil).
	Logger *slog.Logger

	ca   atomic.Pointer[x509.CertPool]   // the trusted CAs, swapped by Reload
	cert atomic.Pointer[tls.Certificate] // the current certificate, swapped by Reload
}

// Load reads the CA, certificate and key named in c.
func (c *Config) Load() error { return c.Reload() }

// Reload reads the CA bundle, the certificate and the key again and, if the
// certificate and key form a pair signed by a CA of the bundle, makes new
// TLS handshakes (as server and as client) trust that bundle and present
// that pair. Connections already open keep theirs. On error the previous
// bundle and pair stay in use, so replacing the files one after the other
// is safe. Safe to call concurrently with handshakes.
func (c *Config) Reload() error {
	b, err := os.ReadFile(c.CAFile)
	if err != nil {
		return fmt.Errorf("%w: read CA %s: %w", ErrConfig, c.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("%w: CA %s holds no PEM certificate", ErrConfig, c.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: certificate %s / key %s: %w", ErrConfig, c.CertFile, c.KeyFile, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: certificate %s is not signed by a CA of %s: %w", ErrConfig, c.CertFile, c.CAFile, err)
	}
	c.ca.Store(pool)
	c.cert.Store(&cert)
	return nil
}

func (c *Config) caPool() *x509.CertPool { return c.ca.Load() }

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
//
// The client's certificate is checked here rather than by crypto/tls, so
// that every refusal, on an HTTP or a gRPC port, is one log line saying
// who was refused and why ("refused a TLS client"): no certificate, a
// certificate from another CA, or a name outside AllowedNames.
func (c *Config) ServerTLS() *tls.Config {
	if c == nil {
		return nil
	}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil },
		// Ask for a certificate without letting crypto/tls refuse a client
		// that sends none: verifyClient refuses it, with a log line. A
		// client that sends one still proves it holds the key.
		ClientAuth: tls.RequestClientCert,
		// The per-connection config replaces the one HTTP and gRPC servers
		// add their protocols to, so it offers them itself.
		NextProtos: []string{"h2", "http/1.1"},
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		per := base.Clone()
		per.ClientCAs = c.caPool() // names the CA to the client; verifyClient checks
		per.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := c.verifyClient(cs.PeerCertificates); err != nil {
				c.logRefusal(hello, cs.PeerCertificates, err)
				return err
			}
			return nil
		}
		return per, nil
	}
	return cfg
}

// ErrPeer is wrapped by every refusal of a TLS client certificate.
var ErrPeer = errors.New("security: TLS client refused")

// verifyClient checks a client's certificate chain against the CA and
// AllowedNames.
func (c *Config) verifyClient(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: it presented no certificate; give it the client certificate of the cluster's security file", ErrPeer)
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots: c.caPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: its certificate %q is not signed by this cluster's CA (%w); issue it from the CA in %s", ErrPeer, certs[0].Subject.CommonName, err, c.CAFile)
	}
	return c.verifyAllowed(nil, chains)
}

func (c *Config) logRefusal(hello *tls.ClientHelloInfo, certs []*x509.Certificate, err error) {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	var remote, local, name string
	if hello != nil && hello.Conn != nil {
		remote, local = hello.Conn.RemoteAddr().String(), hello.Conn.LocalAddr().String()
	}
	if len(certs) > 0 {
		name = certs[0].Subject.CommonName
	}
	log.Warn("refused a TLS client", "component", "tls", "remote", remote, "local", local, "name", name, "err", err)
}

// ClientTLS returns the client-side TLS config, or nil for plaintext. It
// trusts the CA bundle and presents the certificate that Reload last
// loaded; long-lived clients call it for every new connection (see
// rpc.DialOptions, httpx.Client) so that they follow rotations. Clearing
// Certificates on the returned config makes it present none.
func (c *Config) ClientTLS() *tls.Config {
	if c == nil {
		return nil
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*c.cert.Load()},
		RootCAs:      c.caPool(),
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
	name := ""
	if len(chains) > 0 && len(chains[0]) > 0 {
		name = chains[0][0].Subject.CommonName
	}
	return fmt.Errorf("%w: its certificate name %q is not in allowed_names %v", ErrPeer, name, c.AllowedNames)
}
