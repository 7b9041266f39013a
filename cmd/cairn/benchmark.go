package main

import (
	"context"
	"io"

	"github.com/cairn-storage/cairn/internal/bench"
)

func runBenchmark(_ context.Context, args []string, stdout, stderr io.Writer) int {
	return bench.Main(args, stdout, stderr)
}
