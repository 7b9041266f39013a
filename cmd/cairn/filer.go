package main

import (
	"context"
	"io"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/security"
)

func runFiler(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlagSet("filer", "filer --dir DIR --master m1:9333[,...] [--ip IP] [--port 8888] [--peers f1:8888,f2:8888,f3:8888]", stderr)
	var c common
	c.register(fs)
	dir := fs.String("dir", "", "data directory for the Raft log, snapshots and namespace state (required)")
	ip := fs.String("ip", "127.0.0.1", "address to listen on and advertise")
	port := fs.Int("port", 8888, "HTTP port; gRPC listens on port+10000, Raft on port+20000")
	peers := fs.String("peers", "", "HTTP addresses of all filers, comma separated (empty: single filer)")
	masters := fs.String("master", "127.0.0.1:9333", "master HTTP addresses, comma separated")
	repl := fs.String("replication", "", "replica placement for data written through the HTTP API (empty: the master's default)")
	coll := fs.String("collection", "", "collection for data written through the HTTP API")
	uploadTimeout := fs.Duration("upload-timeout", time.Hour, "how long an uploaded needle may stay unreferenced (a writer died) before it is deleted")
	var api filerHTTPFlags
	api.register(fs, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "filer: --dir is required (where the namespace is kept)")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "filer: %v", err)
	}
	sec, err := c.securityConfig(security.RoleFiler)
	if err != nil {
		return fail(stderr, "filer: %v", err)
	}
	watchSecurity(ctx, log, sec)
	s, err := filer.NewServer(filer.Config{
		Dir: *dir, IP: *ip, Port: *port, Peers: splitList(*peers), Masters: splitList(*masters),
		Replication: *repl, Collection: *coll, UploadTimeout: *uploadTimeout,
		HTTPAPI: api.mode, HTTPBind: api.bind, HTTPRoot: api.root, Security: sec, Logger: log,
	})
	if err != nil {
		return fail(stderr, "filer: %v", err)
	}
	if err := s.Run(ctx); err != nil {
		return fail(stderr, "filer: %v", err)
	}
	return 0
}
