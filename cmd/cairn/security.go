package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
)

const securityUsage = `Usage:
  cairn security init --dir DIR --hosts h1,h2,... [--days 3650]
  cairn security renew --dir DIR [--days 365]
  cairn security rotate-ca begin|issue|finish --dir DIR [--days 3650]`

// runSecurity handles `cairn security init|renew|rotate-ca`.
func runSecurity(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, securityUsage)
		return 2
	}
	switch args[0] {
	case "init":
		return runSecurityInit(args[1:], stdout, stderr)
	case "renew":
		return runSecurityRenew(args[1:], stdout, stderr)
	case "rotate-ca":
		return runSecurityRotateCA(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, securityUsage)
	return 2
}

func runSecurityInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("security init", "security init --dir DIR --hosts h1,h2,... [--days 3650]", stderr)
	dir := fs.String("dir", "", "directory to create the CA, certificates and security.toml in (required, must not hold a security.toml)")
	hosts := fs.String("hosts", "", "IP addresses and DNS names of the cluster's machines, comma separated (127.0.0.1 and localhost are always included)")
	days := fs.Int("days", 3650, "validity of the CA and certificates, in days")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "security init: --dir is required")
	}
	path, err := security.Init(*dir, splitList(*hosts), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fail(stderr, "security init: %v", err)
	}
	fmt.Fprintf(stdout, "wrote a CA, certificates for master, volume, filer and client, %s and %s\n", path, security.ClientFileName)
	fmt.Fprintf(stdout, "start every server with --security %s (ca-key.pem is not needed there: keep it offline)\n", path)
	fmt.Fprintf(stdout, "give mounts, the CSI plugin and the shell --security %s (no server certificates, no signing key)\n",
		filepath.Join(filepath.Dir(path), security.ClientFileName))
	return 0
}

func runSecurityRenew(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("security renew", "security renew --dir DIR [--days 365]", stderr)
	dir := fs.String("dir", "", "directory made by security init, with the CA key (required)")
	days := fs.Int("days", 365, "validity of the new certificates, in days")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "security renew: --dir is required")
	}
	if err := security.IssueLeaves(*dir, time.Duration(*days)*24*time.Hour); err != nil {
		return fail(stderr, "security renew: %v", err)
	}
	fmt.Fprintf(stdout, "issued new certificates for master, volume, filer and client in %s (same names and addresses as before)\n", *dir)
	fmt.Fprintln(stdout, "copy them to every host, then send SIGHUP to every cairn process (or wait 30s for them to notice)")
	return 0
}

func runSecurityRotateCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, securityUsage)
		return 2
	}
	step := args[0]
	fs := newFlagSet("security rotate-ca "+step, "security rotate-ca begin|issue|finish --dir DIR [--days 3650]", stderr)
	dir := fs.String("dir", "", "directory made by security init, with the CA key (required)")
	days := fs.Int("days", 3650, "validity of the new CA (begin) or of the new certificates (issue), in days")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *dir == "" {
		return fail(stderr, "security rotate-ca: --dir is required")
	}
	validity := time.Duration(*days) * 24 * time.Hour
	var err error
	var done string
	switch step {
	case "begin":
		err = security.BeginCARotation(*dir, validity)
		done = "step 1 of 3: made a new CA; ca.pem now trusts the old and the new CA"
	case "issue":
		err = security.IssueLeaves(*dir, validity)
		done = "step 2 of 3: issued every certificate from the new CA"
	case "finish":
		err = security.FinishCARotation(*dir)
		done = "step 3 of 3: ca.pem now holds the new CA alone; the old one is in ca-old.pem"
	default:
		fmt.Fprintln(stderr, securityUsage)
		return 2
	}
	if err != nil {
		return fail(stderr, "security rotate-ca %s: %v", step, err)
	}
	fmt.Fprintln(stdout, done)
	fmt.Fprintln(stdout, "copy the directory's files to every host, then send SIGHUP to every cairn process (or wait 30s) before the next step")
	return 0
}
