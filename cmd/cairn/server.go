package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/fuse"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/master"
	"github.com/cairn-storage/cairn/volume"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("server", "server --dir DATA [--mount MNT [--cache-dir DIR]] [--ip 127.0.0.1] [--master.port 9333] [--volume.port 8080] [--filer.port 8888]", stderr)
	var c common
	c.register(fs)
	dir := fs.String("dir", "", "data directory; master/, volume/ and filer/ are created inside (required)")
	ip := fs.String("ip", "127.0.0.1", "address to listen on and advertise")
	mport := fs.Int("master.port", 9333, "master HTTP port")
	vport := fs.Int("volume.port", 8080, "volume server HTTP port")
	fport := fs.Int("filer.port", 8888, "filer HTTP port")
	mnt := fs.String("mount", "", "also mount the namespace with FUSE at this directory")
	var cache cacheFlags
	cache.register(fs)
	maxVolumes := fs.Int("volume.max", 8, "most volumes the volume server holds")
	limit := fs.Uint64("volume-size-limit-mb", 1024, "a volume stops taking new writes at this size (MiB)")
	var api filerHTTPFlags
	api.register(fs, "filer.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "server: --dir is required (where all data is kept)")
	}
	if err := cache.check(); err != nil {
		return fail(stderr, "server: %v", err)
	}
	if cache.dir != "" && *mnt == "" {
		return fail(stderr, "server: --cache-dir is a setting of the mount; give --mount too")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "server: %v", err)
	}
	var sec [3]*security.Config // master, volume, filer
	for i, role := range []string{security.RoleMaster, security.RoleVolume, security.RoleFiler} {
		if sec[i], err = c.securityConfig(role); err != nil {
			return fail(stderr, "server: %v", err)
		}
	}
	watchSecurity(ctx, log, sec[:]...)
	masterAddr := net.JoinHostPort(*ip, strconv.Itoa(*mport))
	m, err := master.New(master.Config{
		Dir: filepath.Join(*dir, "master"), IP: *ip, Port: *mport,
		DefaultReplication: "000", VolumeSizeLimit: *limit << 20, Pulse: time.Second,
		Security: sec[0], Logger: log,
	})
	if err != nil {
		return fail(stderr, "server: %v", err)
	}
	v, err := volume.NewServer(volume.Config{
		Dir: filepath.Join(*dir, "volume"), IP: *ip, Port: *vport, Masters: []string{masterAddr},
		MaxVolumes: *maxVolumes, Pulse: time.Second, Security: sec[1], Logger: log,
	})
	if err != nil {
		return fail(stderr, "server: %v", err)
	}
	f, err := filer.NewServer(filer.Config{
		Dir: filepath.Join(*dir, "filer"), IP: *ip, Port: *fport, Masters: []string{masterAddr},
		HTTPAPI: api.mode, HTTPBind: api.bind, HTTPRoot: api.root,
		Security: sec[2], Logger: log,
	})
	if err != nil {
		return fail(stderr, "server: %v", err)
	}
	if *mnt != "" {
		// The mount's series are served with the filer's, on its /metrics.
		if err := f.RegisterMetrics(fuse.Collectors()...); err != nil {
			return fail(stderr, "server: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- m.Run(ctx) }()
	go func() { errc <- v.Run(ctx) }()
	go func() { errc <- f.Run(ctx) }()
	running := 3
	if *mnt != "" {
		running++
	}
	go func() {
		if waitReady(ctx, m.Ready) != nil || waitReady(ctx, f.Ready) != nil {
			if *mnt != "" {
				errc <- nil // never mounted; counted as done
			}
			return
		}
		scheme := httpx.Scheme(sec[0])
		fmt.Fprintf(stdout, "cairn is ready: master %s://%s, volume server %s://%s, filer %s://%s, data in %s\n",
			scheme, masterAddr, scheme, v.URL(), scheme, f.URL(), *dir)
		if *mnt != "" {
			cfg := fuse.Config{
				Filers: []string{f.URL()}, Dir: *mnt, Root: "/", Uid: -1, Gid: -1, Logger: log, Security: sec[2],
			}
			cache.apply(&cfg)
			errc <- serveMount(ctx, stdout, cfg)
		}
	}()
	var first error
	for range running {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return fail(stderr, "server: %v", first)
	}
	return 0
}

// serveMount mounts cfg and serves it until ctx ends, then flushes and
// unmounts; it returns when the mount is gone.
func serveMount(ctx context.Context, stdout io.Writer, cfg fuse.Config) error {
	mt, err := fuse.Mount(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "mounted the namespace at %s\n", cfg.Dir)
	done := make(chan error, 1)
	go func() { done <- mt.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if err := mt.Unmount(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "flushed and unmounted %s\n", cfg.Dir)
	return nil
}

// waitReady polls ready until it returns nil or ctx ends.
func waitReady(ctx context.Context, ready func() error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if err := ready(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
