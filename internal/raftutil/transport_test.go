package raftutil

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestRaftPortHandshakeDeadline: on a TLS Raft port, a connection that
// never starts its handshake is closed after handshakeTimeout, while a peer
// that finished its handshake may stay idle longer than that.
func TestRaftPortHandshakeDeadline(t *testing.T) {
	old := handshakeTimeout
	handshakeTimeout = 300 * time.Millisecond
	defer func() { handshakeTimeout = old }()
	ip := testutil.LoopbackIP(t, testPort)
	sec := testutil.Security(t, "master", []string{ip})
	addr := net.JoinHostPort(ip, strconv.Itoa(testPort))
	s, err := listen(addr, sec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// What the Raft transport does with an accepted connection: read it
	// until it fails, echoing what it gets.
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection without a handshake: read %v, want EOF (closed by the server)", err)
	}

	peer, err := (&streamLayer{sec: sec}).Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * handshakeTimeout) // idle past the handshake deadline
	if _, err := peer.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 2)
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "ab" {
		t.Fatalf("idle peer after the handshake deadline: %q %v", got, err)
	}
}
