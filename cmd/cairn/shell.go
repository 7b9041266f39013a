package main

import (
	"context"
	"io"
	"os"

	"github.com/cairn-storage/cairn/internal/shell"
)

// runShell runs the admin shell: a prompt on a terminal, or the commands
// given with -c (see docs/shell.md).
func runShell(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return shell.Main(ctx, args, os.Stdin, stdout, stderr)
}
