package raftutil

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
)

// streamLayer is the raft.StreamLayer cairn uses: plain TCP, or mutual TLS
// when a security configuration is given. Safe for concurrent use.
type streamLayer struct {
	ln  net.Listener
	sec *security.Config // nil: plaintext
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// maxConns bounds open connections on the Raft port: peers pool a few
// each (MaxPool), so this leaves room for many members and sheds floods.
const maxConns = 256

// handshakeTimeout bounds the TLS handshake of an accepted connection, so
// connections that never finish one (slowloris) free their slot.
var handshakeTimeout = 10 * time.Second

// listen binds the Raft port. With sec set, accepted connections must present
// a client certificate signed by the cluster CA, within handshakeTimeout.
func listen(addr string, sec *security.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ln = httpx.LimitListener(ln, maxConns)
	s := &streamLayer{ln: ln, sec: sec}
	if t := sec.ServerTLS(); t != nil {
		s.ln = &tlsListener{Listener: ln, cfg: t}
	}
	return s, nil
}

// tlsListener is tls.NewListener with a deadline on the handshake. The
// handshake runs on the connection's first Read or Write, in the transport's
// goroutine for that connection, so a slow client never blocks Accept.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	return &handshakeConn{Conn: tls.Server(c, l.cfg)}, nil
}

// handshakeConn clears the handshake deadline once the handshake is done:
// Raft connections then idle in the peer's pool as long as they like.
type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		if c.err = c.Conn.Handshake(); c.err == nil {
			c.err = c.Conn.SetDeadline(time.Time{})
		}
	})
	return c.err
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *handshakeConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
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
