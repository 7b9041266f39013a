package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main is `cairn benchmark`: it parses args (the words after "benchmark"),
// runs the benchmark with the report on stdout and progress on stderr, and
// returns the process exit code: 0 when every request succeeded and every
// read verified, 1 when not, 2 for bad flags. SIGINT and SIGTERM stop the
// run early and the report covers what was done.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchmark", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Master, "master", "127.0.0.1:9333", "master HTTP address `host:port`")
	fs.IntVar(&cfg.N, "n", 100000, "number of needles to write and read")
	fs.IntVar(&cfg.Concurrency, "c", 16, "number of concurrent requests")
	fs.IntVar(&cfg.Size, "size", 1024, "bytes per needle")
	fs.StringVar(&cfg.Replication, "replication", "", "replica placement `xyz`, e.g. 001 (empty: the master's default)")
	fs.StringVar(&cfg.Collection, "collection", "", "collection to write into (empty: the default collection)")
	fs.BoolVar(&cfg.SkipRead, "skip-read", false, "only write, do not read back")
	fs.IntVar(&cfg.AssignBatch, "assign-batch", DefaultAssignBatch, "file ids to ask the master for per assign call")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn benchmark [--master host:port] [-n N] [-c C] [--size BYTES] [--replication xyz] [--collection NAME]\n\n")
		fmt.Fprintf(stderr, "Writes N needles through the master and volume servers, reads them back in random\norder verifying every byte, and reports throughput and latency per phase.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn benchmark: unexpected argument %q (flags only, see --help)\n", fs.Arg(0))
		return 2
	}
	cfg.Out = stdout
	if !*quiet {
		cfg.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "cairn benchmark: %v\n", err)
		return 1
	}
	return 0
}
