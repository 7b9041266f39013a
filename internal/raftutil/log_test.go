package raftutil

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHCLogRoutedToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "127.0.0.1:9333")
	l.Info("entering follower state", "term", 3)
	l.Debug("noise")
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "127.0.0.2:29333")
	l.Error("failed to appendEntries", "peer", "127.0.0.3:29333")
	out := buf.String()
	if strings.Contains(out, "entering follower state") || strings.Contains(out, "noise") {
		t.Fatalf("info/debug lines leaked:\n%s", out)
	}
	for _, want := range []string{
		`level=WARN msg="raft: heartbeat timeout reached, starting election"`,
		`last-leader-addr=127.0.0.2:29333`,
		`level=ERROR msg="raft: failed to appendEntries"`,
		`raft_id=127.0.0.1:9333`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, out)
	}
}
