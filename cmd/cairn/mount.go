package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/fuse"
)

// runMount mounts a filer subtree in the foreground until SIGINT/SIGTERM
// (then it flushes buffered data and unmounts) or an outside unmount.
func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("mount", "mount --filer f1:8888[,f2:8888,...] --dir MNT [--root /subtree] [--read-only] [--cache-dir DIR]", stderr)
	var c common
	c.register(fs)
	filers := fs.String("filer", "", "filer HTTP addresses, comma separated (required; gRPC is at port+10000)")
	dir := fs.String("dir", "", "mount point (required)")
	root := fs.String("root", "/", "filer directory to mount")
	uid := fs.Int("uid", -1, "report this owner uid for every file (-1: as stored)")
	gid := fs.Int("gid", -1, "report this owner gid for every file (-1: as stored)")
	umask := fs.Uint("umask", 0, "permission bits to clear in reported modes, octal like 022 (0: none)")
	var cache cacheFlags
	cache.register(fs)
	readOnly := fs.Bool("read-only", false, "mount read-only")
	repl := fs.String("replication", "", "replica placement for data written through the mount (empty: the master's default)")
	coll := fs.String("collection", "", "collection for data written through the mount")
	metricsAddr := fs.String("metrics-addr", "", "serve the mount's Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9327 (off by default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *filers == "" || *dir == "" {
		return fail(stderr, "mount: --filer and --dir are required (for example: cairn mount --filer 127.0.0.1:8888 --dir /mnt/cairn)")
	}
	if err := cache.check(); err != nil {
		return fail(stderr, "mount: %v", err)
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "mount: %v", err)
	}
	sec, err := c.securityConfig("client")
	if err != nil {
		return fail(stderr, "mount: %v", err)
	}
	// Follow certificate and CA rotation (docs/security.md), and take
	// SIGHUP as "reload", not as a signal to die.
	watchSecurity(ctx, log, sec)
	if *metricsAddr != "" {
		if _, err := serveMetrics(*metricsAddr, log, fuse.Collectors()...); err != nil {
			return fail(stderr, "mount: %v", err)
		}
	}
	cfg := fuse.Config{
		Filers: splitList(*filers), Dir: *dir, Root: *root, Uid: *uid, Gid: *gid,
		Umask: uint32(*umask), ReadOnly: *readOnly, Replication: *repl, Collection: *coll,
		Logger: log, Security: sec,
	}
	cache.apply(&cfg)
	m, err := fuse.Mount(ctx, cfg)
	if err != nil {
		return fail(stderr, "mount: %v", err)
	}
	fmt.Fprintf(stdout, "mounted %s of filer %s at %s\n", *root, *filers, *dir)
	waited := make(chan error, 1)
	go func() { waited <- m.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			return fail(stderr, "mount: %v", err)
		}
		fmt.Fprintf(stdout, "%s was unmounted\n", *dir)
		return 0
	case <-ctx.Done():
	}
	fmt.Fprintf(stdout, "stopping: flushing buffered data and unmounting %s\n", *dir)
	start := time.Now()
	if err := m.Unmount(); err != nil {
		return fail(stderr, "mount: %v", err)
	}
	fmt.Fprintf(stdout, "flushed and unmounted %s in %v\n", *dir, time.Since(start).Round(time.Millisecond))
	return 0
}

// cacheFlags are the mount's cache directory flags, shared by cairn mount
// and cairn server --mount (same names, same meaning).
type cacheFlags struct {
	dir          string
	memMB, maxMB int
	inlineKB     int
}

func (c *cacheFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "cache-dir", "", "directory where buffered writes past --cache-memory-mb spill to local disk (one unlinked file; empty: writes are buffered in memory, at most 256 MiB)")
	fs.IntVar(&c.memMB, "cache-memory-mb", 64, "with --cache-dir: MiB of buffered writes kept in memory before they spill")
	fs.IntVar(&c.maxMB, "cache-max-mb", 4096, "with --cache-dir: most MiB of buffered writes in the spill file; past it writers wait for uploads")
	fs.IntVar(&c.inlineKB, "inline-kb", 64, fmt.Sprintf("a flush of at most this many KiB (an fsync after small writes) is committed with its bytes to the filer, one durable step instead of two; 0: always store data on the volume servers first (at most %d)", filer.MaxInlineBytes>>10))
}

// check refuses bounds the mount cannot work with.
func (c *cacheFlags) check() error {
	if c.memMB < 1 || c.maxMB < 4 {
		return fmt.Errorf("--cache-memory-mb must be at least 1 and --cache-max-mb at least 4 (one needle); got %d and %d", c.memMB, c.maxMB)
	}
	if c.inlineKB < 0 || c.inlineKB > filer.MaxInlineBytes>>10 {
		return fmt.Errorf("--inline-kb must be between 0 and %d; got %d", filer.MaxInlineBytes>>10, c.inlineKB)
	}
	return nil
}

// apply sets the cache fields of cfg.
func (c *cacheFlags) apply(cfg *fuse.Config) {
	cfg.CacheDir = c.dir
	cfg.SpillMemory = int64(c.memMB) << 20
	cfg.SpillLimit = int64(c.maxMB) << 20
	cfg.InlineLimit = c.inlineKB << 10
	if c.inlineKB == 0 {
		cfg.InlineLimit = -1
	}
}
