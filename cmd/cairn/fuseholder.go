package main

import (
	"context"
	"io"

	"github.com/cairn-storage/cairn/csi/mountsvc"
)

// runFuseHolder keeps the /dev/fuse connections of the mount service's
// mounts across its restarts, until SIGINT or SIGTERM (then it closes
// them, which ends those mounts: stop it only on a drained node; see
// docs/csi.md).
func runFuseHolder(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("fuse-holder", "fuse-holder [--socket "+mountsvc.DefaultHolderSocket+"]", stderr)
	var c common
	c.register(fs)
	socket := fs.String("socket", mountsvc.DefaultHolderSocket, "unix socket the mount service hands its connections over on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(stderr, "fuse-holder: unexpected arguments %q", fs.Args())
	}
	log, err := c.logger(stderr)
	if err != nil {
		return fail(stderr, "fuse-holder: %v", err)
	}
	if err := mountsvc.RunHolder(ctx, *socket, log); err != nil {
		return fail(stderr, "%v", err)
	}
	return 0
}
