package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
)

// runSecurity handles `cairn security init`.
func runSecurity(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "Usage: cairn security init --dir DIR --hosts h1,h2,...")
		return 2
	}
	fs := newFlagSet("security init", "security init --dir DIR --hosts h1,h2,... [--days 3650]", stderr)
	dir := fs.String("dir", "", "directory to create the CA, certificates and security.toml in (required, must not hold a security.toml)")
	hosts := fs.String("hosts", "", "IP addresses and DNS names of the cluster's machines, comma separated (127.0.0.1 and localhost are always included)")
	days := fs.Int("days", 3650, "validity of the CA and certificates, in days")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "security init: --dir is required")
	}
	path, err := security.Init(*dir, splitList(*hosts), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fail(stderr, "security init: %v", err)
	}
	fmt.Fprintf(stdout, "wrote a CA, certificates for master, volume, filer and client, and %s\n", path)
	fmt.Fprintf(stdout, "start every component with --security %s (ca-key.pem is not needed there: keep it offline)\n", path)
	return 0
}
