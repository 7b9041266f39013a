package main

import (
	"context"
	"io"

	"github.com/cairn-storage/cairn/internal/bench"
)

func runBenchmark(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return bench.Main(ctx, args, stdout, stderr)
}
