// Package rpc is the gRPC plumbing every component shares: address
// conventions, servers and a pool of client connections, all of which honour
// a *security.Config (nil means plaintext).
package rpc

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/security"
)

// GRPCOffset is added to a server's HTTP port to get its gRPC port, the
// convention SeaweedFS users know.
const GRPCOffset = 10000

// MaxConns bounds the open connections of one gRPC server (clients keep one
// per server, so this is about the number of peers and mounts); further
// ones wait in the accept backlog. Handshakes must finish within 10s, so
// connections that never do free their slot.
const MaxConns = 1024

// MaxMessage bounds one gRPC message. A replicated needle travels as its
// whole record in one message, so the largest needle (64 MiB) plus its
// header and block checksums (4 KiB at most) must fit, with room to spare.
const MaxMessage = 65 << 20

// MaxStreams bounds concurrent calls on one gRPC connection, MaxInFlight
// those on one server.
const (
	MaxStreams  = 256
	MaxInFlight = 2048
)

// Flow-control windows of every gRPC connection, both ways: a call may
// have StreamWindow bytes in flight unread by its receiver, and all calls
// of a connection ConnWindow. Setting them turns off gRPC's bandwidth
// estimation, which otherwise answers the first data frame after every
// quiet spell with a ping the peer must read and acknowledge: one more
// round of frames, reads and goroutine wake-ups on both sides for every
// small call made one at a time (a filer commit), to size windows that
// loopback and a LAN fill at these sizes anyway (a 4 MiB replicated needle
// travels without waiting for a window update). See docs/storage-core.md.
const (
	StreamWindow = 8 << 20
	ConnWindow   = 16 << 20
)

// GRPCAddr derives "host:port+10000" from an HTTP address "host:port".
func GRPCAddr(httpAddr string) (string, error) {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("rpc: address %q is not host:port: %w", httpAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+GRPCOffset > 65535 {
		return "", fmt.Errorf("rpc: address %q: port must be 1..%d", httpAddr, 65535-GRPCOffset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+GRPCOffset)), nil
}

// NewServer returns a gRPC server using sec (nil: plaintext).
//
// Every server gets the same bounds as the HTTP servers (see
// docs/security.md): the TLS handshake must finish within 10s, a
// connection carries at most MaxStreams concurrent calls, dead peers are
// found by keepalive pings, and beyond MaxInFlight calls at once further
// calls fail with Unavailable (retryable) rather than queue.
func NewServer(sec *security.Config, opts ...grpc.ServerOption) *grpc.Server {
	inflight := make(chan struct{}, MaxInFlight)
	acquire := func() error {
		select {
		case inflight <- struct{}{}:
			return nil
		default:
			return status.Errorf(codes.Unavailable, "server busy: %d calls in flight; retry", MaxInFlight)
		}
	}
	opts = append(opts,
		grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(MaxStreams),
		grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := acquire(); err != nil {
				return nil, err
			}
			defer func() { <-inflight }()
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := acquire(); err != nil {
				return err
			}
			defer func() { <-inflight }()
			return h(srv, ss)
		}),
	)
	if t := sec.ServerTLS(); t != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(t)))
	}
	return grpc.NewServer(opts...)
}

// DialOptions returns the client options matching sec.
func DialOptions(sec *security.Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if sec != nil {
		creds = &reloadingCreds{TransportCredentials: credentials.NewTLS(sec.ClientTLS()), sec: sec}
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow),
	}
}

// Pool caches one client connection per gRPC address. Safe for concurrent use.
type Pool struct {
	sec *security.Config

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

// NewPool returns an empty pool dialling with sec.
func NewPool(sec *security.Config) *Pool {
	return &Pool{sec: sec, conns: make(map[string]*grpc.ClientConn)}
}

// Conn returns the connection to the gRPC server behind an HTTP address
// (the gRPC port is derived with GRPCAddr). Connecting is lazy: errors show up
// on the first call.
func (p *Pool) Conn(httpAddr string) (*grpc.ClientConn, error) {
	addr, err := GRPCAddr(httpAddr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, DialOptions(p.sec)...)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every cached connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
	return nil
}

// RaftOffset is added to a Raft member's HTTP port to get its Raft (TCP) port.
const RaftOffset = 20000

// RaftAddr derives "host:port+20000" from an HTTP address "host:port".
func RaftAddr(httpAddr string) (string, error) {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("rpc: address %q is not host:port: %w", httpAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+RaftOffset > 65535 {
		return "", fmt.Errorf("rpc: address %q: port must be 1..%d", httpAddr, 65535-RaftOffset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+RaftOffset)), nil
}

// reloadingCreds are gRPC client credentials that take the certificate and
// CA bundle sec holds at each new connection, so long-lived connection
// pools follow certificate and CA rotation.
type reloadingCreds struct {
	credentials.TransportCredentials
	sec *security.Config
}

func (r *reloadingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(r.sec.ClientTLS()).ClientHandshake(ctx, authority, conn)
}

func (r *reloadingCreds) Clone() credentials.TransportCredentials {
	return &reloadingCreds{TransportCredentials: r.TransportCredentials.Clone(), sec: r.sec}
}
