// Command cairn is the single binary of the cairn storage system.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/cairn-storage/cairn/internal/gcfloor"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"master":        {"run a master (Raft group for topology and file ids)", runMaster},
	"volume":        {"run a volume server (needle store)", runVolume},
	"filer":         {"run a filer (Raft group for the POSIX namespace)", runFiler},
	"mount":         {"mount a filer subtree with FUSE (foreground)", runMount},
	"csi":           {"CSI plugin (controller, node or monolith) on a unix socket", runCSI},
	"mount-service": {"host the FUSE mounts of CSI volumes on this node (for the node plugin)", runMountService},
	"fuse-holder":   {"keep the mount service's FUSE connections across its restarts (one per node)", runFuseHolder},
	"server":        {"run master, volume server and filer in one process (single node)", runServer},
	"benchmark":     {"needle throughput (or `benchmark meta`: filer metadata ops/s)", runBenchmark},
	"security":      {"security init: create a CA, certificates and a security file", runSecurity},
	"shell":         {"admin shell: cluster status, volumes, vacuum/scrub, namespace, quotas, snapshots", runShell},
	"version":       {"print the version", runVersion},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "cairn: durable, replicated storage for containers.")
	fmt.Fprintln(w, "\nUsage: cairn <command> [flags]   (cairn <command> -h for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "cairn: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	// Servers with small heaps that allocate fast (the filer) would
	// otherwise collect many times a second; GOGC in the environment wins.
	gcfloor.Set(gcfloor.DefaultFloor)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cmd.run(ctx, os.Args[2:], os.Stdout, os.Stderr))
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "cairn", version)
	return 0
}
