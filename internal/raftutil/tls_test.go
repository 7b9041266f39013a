package raftutil

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-storage/cairn/internal/testutil"
)

func TestThreeNodesTLS(t *testing.T) {
	var ips, ids []string
	for range 3 {
		ip := testutil.LoopbackIP(t, testPort, testPort+20000)
		ips = append(ips, ip)
		ids = append(ids, net.JoinHostPort(ip, strconv.Itoa(testPort)))
	}
	sec := testutil.Security(t, "master", ips)
	var ms []*member
	for _, id := range ids {
		m := &member{cfg: testConfig(t, id, ids)}
		m.cfg.Security = sec
		startMember(t, m)
		ms = append(ms, m)
	}
	leader := waitLeader(t, ms)
	ctx := t.Context()
	if _, err := leader.node.Apply(ctx, cmd("tls", "on")); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitValue(t, m, "tls", "on")
	}

	// A dialer holding a certificate from another CA is refused.
	addr := net.JoinHostPort(ips[0], strconv.Itoa(testPort+20000))
	stranger := &streamLayer{sec: testutil.Security(t, "master", ips)}
	if conn, err := stranger.Dial(raft.ServerAddress(addr), 5*time.Second); err == nil {
		conn.Close()
		t.Fatal("TLS handshake with a foreign CA succeeded")
	}
	// The group is unaffected.
	if _, err := leader.node.Apply(ctx, cmd("after", "stranger")); err != nil {
		t.Fatal(err)
	}
}
