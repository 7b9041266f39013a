// Package testutil has helpers shared by tests: loopback addresses and
// condition waits. Only loopback addresses are ever handed out.
package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// LoopbackIP returns a random address in 127.0.0.0/8 on which every given
// port is free right now, so tests can run servers on their default ports
// without colliding with each other.
func LoopbackIP(t testing.TB, ports ...int) string {
	t.Helper()
	for range 200 {
		ip := fmt.Sprintf("127.%d.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1, rand.IntN(250)+2)
		if portsFree(ip, ports) {
			return ip
		}
	}
	t.Fatalf("testutil: no loopback address with ports %v free", ports)
	return ""
}

func portsFree(ip string, ports []int) bool {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		lns = append(lns, l)
	}
	return true
}

// WaitFor polls cond every 20ms until it returns nil or timeout passes, then
// fails the test with the last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for a writer and a reader at once, for
// a process's output that a test reads while the process runs.
type SyncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
