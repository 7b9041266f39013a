package main

import (
	"context"
	"io"

	"github.com/cairn-storage/cairn/csi/mountsvc"
	"github.com/cairn-storage/cairn/fuse"
	"github.com/cairn-storage/cairn/internal/security"
)

// runMountService hosts the FUSE mounts of CSI volumes on this node until
// SIGINT or SIGTERM (then it flushes them and, with --holder, leaves their
// connections to the holder for the next start; see docs/csi.md).
func runMountService(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("mount-service", "mount-service --socket /run/cairn/mount.sock --filer f1:8888[,...] [--state /var/lib/cairn/mounts.json] [--holder /run/cairn/fuse-holder.sock] [--metrics-addr ADDR]", stderr)
	var c common
	c.register(fs)
	socket := fs.String("socket", "/run/cairn/mount.sock", "unix socket to serve the node plugin on")
	filers := fs.String("filer", "", "filer HTTP addresses, comma separated (required; gRPC is at port+10000)")
	state := fs.String("state", "", "file recording the mounts, so a restarted service mounts them again (empty: not recorded)")
	holder := fs.String("holder", "", "socket of the fuse holder (cairn fuse-holder), which keeps the mounts alive across restarts of this service (empty: no hand-over; a restart breaks the mounts)")
	metricsAddr := fs.String("metrics-addr", "", "serve the mounts' Prometheus metrics (summed over every mount) on http://ADDR/metrics, e.g. 127.0.0.1:9328 (off by default)")
	unmount := fs.Bool("unmount-on-exit", false, "unmount every volume when stopping (default: flush only, and mount again at the next start)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "mount-service: %v", err)
	}
	sec, err := c.securityConfig(security.RoleClient)
	if err != nil {
		return fail(stderr, "mount-service: %v", err)
	}
	// Follow certificate and CA rotation (docs/security.md), and take
	// SIGHUP as "reload", not as a signal to die.
	watchSecurity(ctx, log, sec)
	if *metricsAddr != "" {
		if _, err := serveMetrics(*metricsAddr, log, fuse.Collectors()...); err != nil {
			return fail(stderr, "mount-service: %v", err)
		}
	}
	err = mountsvc.Run(ctx, mountsvc.Config{
		Socket: *socket, Filers: splitList(*filers), StateFile: *state, UnmountOnExit: *unmount,
		Holder: *holder, Logger: log, Security: sec,
	})
	if err != nil {
		return fail(stderr, "%v", err)
	}
	return 0
}
