package main

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestDebugAddr(t *testing.T) {
	addr, err := serveDebug("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof answered %d: %.100s", resp.StatusCode, body)
	}
	if _, err := serveDebug("999.1.1.1:1", slog.Default()); err == nil || !strings.Contains(err.Error(), "--debug-addr") {
		t.Fatalf("bad address: %v, want an error naming --debug-addr", err)
	}
}

func TestCommonFlagsRejectBadValues(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}} {
		var c common
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if _, err := c.logger(io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming the flag", args, err)
		}
	}
}

func TestMountRejectsBadCacheBounds(t *testing.T) {
	for _, args := range [][]string{{"--cache-memory-mb", "0"}, {"--cache-max-mb", "2"}} {
		var stderr strings.Builder
		full := append([]string{"--filer", "127.0.0.1:1", "--dir", t.TempDir(), "--cache-dir", t.TempDir()}, args...)
		if code := runMount(t.Context(), full, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), args[0]) {
			t.Errorf("%v: exit %d, %q; want a failure naming the flag", args, code, stderr.String())
		}
	}
}
