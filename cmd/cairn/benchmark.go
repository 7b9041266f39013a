package main

import (
	"context"
	"io"

	"github.com/cairn-storage/cairn/internal/bench"
)

// runBenchmark runs the needle benchmark, or with "meta" first the filer
// metadata benchmark.
func runBenchmark(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "meta" {
		return bench.MetaMain(args[1:], stdout, stderr)
	}
	return bench.Main(args, stdout, stderr)
}
