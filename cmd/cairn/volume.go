package main

import (
	"context"
	"io"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/volume"
)

func runVolume(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlagSet("volume", "volume --dir DIR --master m1:9333[,m2:9333] [--ip IP] [--port 8080] [--dc DC] [--rack RACK] [--max N]", stderr)
	var c common
	c.register(fs)
	dir := fs.String("dir", "", "directory holding the volume files (required)")
	ip := fs.String("ip", "127.0.0.1", "address to listen on and advertise")
	port := fs.Int("port", 8080, "HTTP port; gRPC listens on port+10000")
	publicURL := fs.String("public-url", "", "address clients should use (default ip:port)")
	masters := fs.String("master", "127.0.0.1:9333", "master HTTP addresses, comma separated")
	dc := fs.String("dc", "dc1", "data center of this server, for replica placement")
	rack := fs.String("rack", "rack1", "rack of this server, for replica placement")
	maxVolumes := fs.Int("max", 8, "most volumes this server holds")
	pulse := fs.Duration("pulse", time.Second, "heartbeat interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "volume: --dir is required (where volume files are kept)")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "volume: %v", err)
	}
	sec, err := c.securityConfig(security.RoleVolume)
	if err != nil {
		return fail(stderr, "volume: %v", err)
	}
	watchSecurity(ctx, log, sec)
	s, err := volume.NewServer(volume.Config{
		Dir: *dir, IP: *ip, Port: *port, PublicURL: *publicURL, Masters: splitList(*masters),
		DC: *dc, Rack: *rack, MaxVolumes: *maxVolumes, Pulse: *pulse, Security: sec, Logger: log,
	})
	if err != nil {
		return fail(stderr, "volume: %v", err)
	}
	if err := s.Run(ctx); err != nil {
		return fail(stderr, "volume: %v", err)
	}
	return 0
}
