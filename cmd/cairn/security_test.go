package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecurityCommand runs init, renew and a CA rotation through the
// command line, including the steps refused when out of order.
func TestSecurityCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sec")
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := runSecurity(context.Background(), args, &out, &out)
		return code, out.String()
	}
	if code, out := run(); code != 2 || !strings.Contains(out, "rotate-ca") {
		t.Fatalf("no arguments: %d %s", code, out)
	}
	if code, out := run("init", "--dir", dir, "--hosts", "127.0.0.9,node1"); code != 0 || !strings.Contains(out, "client.toml") {
		t.Fatalf("init: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "client.toml")); err != nil {
		t.Fatal(err)
	}
	if code, out := run("init", "--dir", dir); code == 0 {
		t.Fatalf("second init in the same directory: %d %s", code, out)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "filer.pem"))
	if code, out := run("renew", "--dir", dir); code != 0 {
		t.Fatalf("renew: %d %s", code, out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "filer.pem")); bytes.Equal(before, after) {
		t.Fatal("renew left filer.pem as it was")
	}
	if code, out := run("rotate-ca", "finish", "--dir", dir); code == 0 || !strings.Contains(out, "no rotation under way") {
		t.Fatalf("finish before begin: %d %s", code, out)
	}
	for _, step := range []string{"begin", "issue", "finish"} {
		if code, out := run("rotate-ca", step, "--dir", dir); code != 0 || !strings.Contains(out, "of 3") {
			t.Fatalf("rotate-ca %s: %d %s", step, code, out)
		}
	}
	if code, out := run("rotate-ca", "sideways", "--dir", dir); code != 2 {
		t.Fatalf("unknown step: %d %s", code, out)
	}
	if code, out := run("rotate-ca", "begin"); code == 0 || !strings.Contains(out, "--dir is required") {
		t.Fatalf("begin without --dir: %d %s", code, out)
	}
}

// TestServersRefuseClientFile: every server command given the client-only
// file exits at once with an error naming the file and what to use.
func TestServersRefuseClientFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sec")
	var out bytes.Buffer
	if code := runSecurity(context.Background(), []string{"init", "--dir", dir}, &out, &out); code != 0 {
		t.Fatalf("init: %s", out.String())
	}
	client := filepath.Join(dir, "client.toml")
	for _, name := range []string{"master", "volume", "filer", "server"} {
		var out bytes.Buffer
		args := []string{"--dir", t.TempDir(), "--security", client}
		if code := commands[name].run(context.Background(), args, &out, &out); code == 0 {
			t.Errorf("%s with the client-only file: exit 0", name)
		}
		if !strings.Contains(out.String(), "client-only security file") || !strings.Contains(out.String(), "security.toml") {
			t.Errorf("%s with the client-only file said: %s", name, out.String())
		}
	}
}
