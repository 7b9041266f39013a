package shell

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Runner is one invocation of a command, with its flags already bound.
type Runner interface {
	// Run executes the command with its positional arguments. It writes
	// results through env (text or JSON), progress to env.Err, and returns
	// an error for the operator: what failed, on which object, what to do.
	// It must stop promptly when ctx is cancelled, leaving the cluster
	// consistent (every change it made is a complete operation).
	Run(ctx context.Context, env *Env, args []string) error
}

// Command describes a shell command. Each lives in command_<name>.go and
// registers itself in init.
type Command struct {
	Name    string // e.g. "fs.ls"
	Summary string // one line for help
	Usage   string // arguments after the name, e.g. "[-l] PATH"
	Help    string // longer description for help <command>, optional
	// Destructive commands ask for confirmation (see Env.Confirm).
	Destructive bool
	// New declares the command's flags on fs and returns the runner they
	// are bound to. It is called once per invocation.
	New func(fs *flag.FlagSet) Runner
}

// registry holds every command by name; filled by init functions only.
var registry = map[string]*Command{}

func register(c *Command) {
	if _, dup := registry[c.Name]; dup {
		panic("shell: command registered twice: " + c.Name)
	}
	registry[c.Name] = c
}

// commandNames returns the registered names, sorted.
func commandNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// errUsage means the command line was wrong; the usage was printed.
var errUsage = errors.New("shell: bad usage")

// flagSet returns the flag set of c, printing to w.
func (c *Command) flagSet(w io.Writer) (*flag.FlagSet, Runner) {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(w)
	r := c.New(fs)
	fs.Usage = func() {} // parse errors are returned, help is printed by run
	return fs, r
}

// printHelp writes the usage, description and flags of c.
func (c *Command) printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", c.Name, c.Usage, c.Summary)
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Help))
	}
	if c.Destructive {
		fmt.Fprintf(w, "\nThis command changes or removes data: it asks for confirmation unless the shell runs with -y.\n")
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
}

// parseArgs parses flags anywhere among args (so both "fs.rm -r /a" and
// "fs.rm /a -r" work) and returns the positional arguments. Everything
// after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// run parses args for c and runs it.
func (c *Command) run(ctx context.Context, env *Env, args []string) error {
	fs, r := c.flagSet(io.Discard)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(env.Out)
		c.printHelp(env.Out, fs)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v (see help %s)", errUsage, err, c.Name)
	}
	return r.Run(ctx, env, pos)
}

// wantArgs checks the number of positional arguments.
func wantArgs(c string, args []string, min, max int, usage string) error {
	if len(args) < min || (max >= 0 && len(args) > max) {
		return fmt.Errorf("%w: %s takes %s, got %d argument(s) (see help %s)", errUsage, c, usage, len(args), c)
	}
	return nil
}
