package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
)

// common holds the flags every server subcommand shares.
type common struct {
	logLevel  string
	logFormat string
	security  string
	debugAddr string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.security, "security", "", "security config file enabling mutual TLS (empty: plaintext)")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this address, e.g. 127.0.0.1:6060 (off by default; never expose it)")
}

// filerHTTPFlags configure the filer's namespace HTTP API.
type filerHTTPFlags struct {
	mode, bind, root string
}

func (f *filerHTTPFlags) register(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.mode, prefix+"http-api", "read-write", "filer HTTP API: off, read-only or read-write")
	fs.StringVar(&f.bind, prefix+"http-bind", "", "address the filer HTTP API listens on (empty: the filer address)")
	fs.StringVar(&f.root, prefix+"http-root", "/", "subtree the filer HTTP API serves, seen by its clients as /")
}

// logger builds the process logger and makes it the slog default.
func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch c.logFormat {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	if c.debugAddr != "" {
		if _, err := serveDebug(c.debugAddr, l); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// serveDebug serves net/http/pprof on addr for the life of the process
// and returns the address it listens on.
func serveDebug(addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("--debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("serving pprof profiles", "addr", ln.Addr().String(), "path", "/debug/pprof/")
	return ln.Addr().String(), nil
}

// securityConfig loads role's part of --security; nil means plaintext.
func (c *common) securityConfig(role string) (*security.Config, error) {
	if c.security == "" {
		return nil, nil
	}
	return security.LoadFile(c.security, role)
}

// certCheckInterval is how often a server looks at its certificate files.
const certCheckInterval = 30 * time.Second

// watchSecurity reloads the certificates of cfgs (nil ones are skipped) on
// SIGHUP and when their files change, until ctx ends, so certificates can
// be rotated without a restart.
func watchSecurity(ctx context.Context, log *slog.Logger, cfgs ...*security.Config) {
	var live []*security.Config
	for _, c := range cfgs {
		if c != nil {
			live = append(live, c)
			go c.WatchFiles(ctx, certCheckInterval, log)
		}
	}
	if len(live) == 0 {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				for _, c := range live {
					_ = c.ReloadLogged(log, "SIGHUP")
				}
			}
		}
	}()
}

// newFlagSet returns a flag set that prints errors and usage to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// splitList splits "a,b,,c" into ["a","b","c"].
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// fail prints a one-line error for the operator and returns exit status 1.
func fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "cairn: "+format+"\n", args...)
	return 1
}
