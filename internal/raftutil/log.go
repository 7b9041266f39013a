package raftutil

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns an hclog.Logger for hashicorp/raft that forwards
// warnings and errors to l. Raft logs every election step at info and debug
// level; operators only need to hear about trouble.
func newHCLogger(l *slog.Logger, id string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Warn,
		JSONFormat: true,
		Output:     &slogWriter{l: l.With("raft_id", id)},
	})
}

// slogWriter turns hclog's JSON lines into slog records. hclog serializes
// writes, so no locking is needed here beyond what slog does.
type slogWriter struct {
	l *slog.Logger
}

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		w.emit(line)
	}
	return len(p), nil
}

func (w *slogWriter) emit(line []byte) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		w.l.Warn("raft: " + strings.TrimSpace(string(line)))
		return
	}
	level := slog.LevelWarn
	switch fields["@level"] {
	case "error":
		level = slog.LevelError
	case "info":
		level = slog.LevelInfo
	case "debug", "trace":
		level = slog.LevelDebug
	}
	msg, _ := fields["@message"].(string)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, k, fields[k])
	}
	w.l.Log(context.Background(), level, "raft: "+msg, attrs...)
}
