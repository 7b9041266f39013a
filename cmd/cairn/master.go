package main

import (
	"context"
	"io"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/master"
)

func runMaster(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlagSet("master", "master --dir DIR [--ip IP] [--port 9333] [--peers ip1:9333,ip2:9333,ip3:9333]", stderr)
	var c common
	c.register(fs)
	dir := fs.String("dir", "", "data directory for the Raft log, snapshots and state (required)")
	ip := fs.String("ip", "127.0.0.1", "address to listen on and advertise")
	port := fs.Int("port", 9333, "HTTP port; gRPC listens on port+10000, Raft on port+20000")
	peers := fs.String("peers", "", "HTTP addresses of all masters, comma separated (empty: single master)")
	repl := fs.String("default-replication", "000", "replica placement xyz used when an assign names none")
	limit := fs.Uint64("volume-size-limit-mb", 1024, "a volume stops taking new writes at this size (MiB)")
	pulse := fs.Duration("pulse", time.Second, "heartbeat interval expected from volume servers")
	repairAfter := fs.Duration("repair-after", master.DefaultRepairAfter, "re-replicate the volumes of a volume server silent for this long (0: never)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *repairAfter < 0 {
		return fail(stderr, "master: --repair-after must be 0 (off) or a positive duration such as 15m")
	}
	if *repairAfter == 0 {
		*repairAfter = -1 // Config: negative is off, 0 the default
	}
	if *dir == "" {
		return fail(stderr, "master: --dir is required (where the Raft log and state are kept)")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "master: %v", err)
	}
	sec, err := c.securityConfig(security.RoleMaster)
	if err != nil {
		return fail(stderr, "master: %v", err)
	}
	watchSecurity(ctx, log, sec)
	m, err := master.New(master.Config{
		Dir: *dir, IP: *ip, Port: *port, Peers: splitList(*peers),
		DefaultReplication: *repl, VolumeSizeLimit: *limit << 20, Pulse: *pulse,
		RepairAfter: *repairAfter, Security: sec, Logger: log,
	})
	if err != nil {
		return fail(stderr, "master: %v", err)
	}
	if err := m.Run(ctx); err != nil {
		return fail(stderr, "master: %v", err)
	}
	return 0
}
