package raftutil

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/security"
)

// streamLayer is the raft.StreamLayer cairn uses: plain TCP, or mutual TLS
// when a security configuration is given. Safe for concurrent use.
type streamLayer struct {
	ln  net.Listener
	sec *security.Config // nil: plaintext
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// listen binds the Raft port. With sec set, accepted connections must present
// a client certificate signed by the cluster CA.
func listen(addr string, sec *security.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{ln: ln, sec: sec}
	if t := sec.ServerTLS(); t != nil {
		s.ln = tls.NewListener(ln, t)
	}
	return s, nil
}

func (s *streamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *streamLayer) Close() error              { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr            { return s.ln.Addr() }

// Dial connects to a peer's Raft port, with TLS when configured.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.sec == nil {
		return d.Dial("tcp", string(address))
	}
	// A fresh config per connection follows certificate and CA reloads.
	conn, err := tls.DialWithDialer(d, "tcp", string(address), s.sec.ClientTLS())
	if err != nil {
		return nil, errors.Join(errors.New("raftutil: TLS handshake with "+string(address)+" failed"), err)
	}
	return conn, nil
}
