package shell

import (
	"fmt"
	"io"
	"strings"
)

// help prints the command list, or the usage of the named commands.
func help(env *Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(env.Out, "Commands (help <command> for its flags; -h after a command works too):\n")
		printCommandList(env.Out)
		fmt.Fprintf(env.Out, "\nSeparate commands with ';'. exit or Ctrl-D leaves; Ctrl-C stops the running command.\n")
		return nil
	}
	for i, name := range args {
		c, ok := registry[name]
		if !ok {
			return fmt.Errorf("help: unknown command %q; type help for the list of commands", name)
		}
		if i > 0 {
			fmt.Fprintln(env.Out)
		}
		fs, _ := c.flagSet(env.Out)
		c.printHelp(env.Out, fs)
	}
	return nil
}

// printCommandList writes one line per command: name, usage and summary.
func printCommandList(w io.Writer) {
	tw := newTable(w)
	for _, n := range commandNames() {
		c := registry[n]
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.Name, strings.TrimSpace(c.Usage), c.Summary)
	}
	tw.Flush()
}
