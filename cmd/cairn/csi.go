package main

import (
	"context"
	"io"
	"os"

	"github.com/cairn-storage/cairn/csi"
	"github.com/cairn-storage/cairn/internal/security"
)

// runCSI serves the CSI plugin (controller, node or both) until SIGINT or
// SIGTERM.
func runCSI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("csi", "csi --endpoint unix:///csi/csi.sock --mode controller|node|monolith --filer f1:8888[,...] [--master m1:9333,...] [--nodeid ID --mount-socket PATH] [--metrics-addr ADDR]", stderr)
	var c common
	c.register(fs)
	endpoint := fs.String("endpoint", "", "CSI endpoint, unix:///path/csi.sock (empty: $CSI_ENDPOINT)")
	mode := fs.String("mode", csi.ModeMonolith, "services to serve: controller, node or monolith (both)")
	filers := fs.String("filer", "", "filer HTTP addresses, comma separated (required; gRPC is at port+10000)")
	masters := fs.String("master", "", "master HTTP addresses, comma separated (for GetCapacity; empty: GetCapacity is not offered)")
	nodeID := fs.String("nodeid", "", "this node's id (node and monolith modes), e.g. the Nomad node name")
	mountSocket := fs.String("mount-socket", "/run/cairn/mount.sock", "unix socket of the mount service (cairn mount-service) on this node (node and monolith modes)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics over plain HTTP on this address, e.g. 127.0.0.1:9810 (off by default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *endpoint == "" {
		*endpoint = os.Getenv("CSI_ENDPOINT")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "csi: %v", err)
	}
	sec, err := c.securityConfig(security.RoleClient)
	if err != nil {
		return fail(stderr, "csi: %v", err)
	}
	// Follow certificate and CA rotation (docs/security.md), and take
	// SIGHUP as "reload", not as a signal to die.
	watchSecurity(ctx, log, sec)
	err = csi.Run(ctx, csi.Config{
		Endpoint: *endpoint, Mode: *mode, Filers: splitList(*filers), Masters: splitList(*masters),
		NodeID: *nodeID, MountSocket: *mountSocket, MetricsAddr: *metricsAddr, Version: version, Logger: log, Security: sec,
	})
	if err != nil {
		return fail(stderr, "%v", err)
	}
	return 0
}
