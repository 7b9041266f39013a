// Package shell is cairn's admin shell: an interactive prompt (or a list
// of commands given with -c) over the masters, volume servers and filers of
// a cluster. Each command lives in its own file, command_<name>.go, and
// registers itself with register.
package shell

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/chzyer/readline"
)

// Main runs the shell with the command-line args (after "shell") and
// returns the exit status: 0 when every command succeeded, 1 when one
// failed, 2 for bad flags. Without -c it reads commands from stdin: with a
// prompt, history and completion when stdin is a terminal, else one
// command line per line of input.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	fs.SetOutput(stderr)
	masters := fs.String("master", "127.0.0.1:9333", "master HTTP addresses, comma separated (gRPC is at port+10000)")
	filers := fs.String("filer", "127.0.0.1:8888", "filer HTTP addresses, comma separated (empty: no fs, quota or snapshot commands)")
	script := fs.String("c", "", "run these commands (separated by ';') and exit; the status is 1 if any failed")
	output := fs.String("o", "text", "output format: text or json (one JSON document per command)")
	yes := fs.Bool("y", false, "run destructive commands without asking for confirmation")
	history := fs.String("history", "", "history file (default $XDG_STATE_HOME/cairn/shell_history, else ~/.cairn_shell_history)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn shell [--master m1:9333,...] [--filer f1:8888,...] [-o json] [-y] [-c \"cmd; cmd\"]\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nCommands (help <command> for details):\n")
		printCommandList(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn shell: unexpected argument %q; pass commands with -c \"cmd; cmd\"\n", fs.Arg(0))
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "cairn shell: -o %q: want text or json\n", *output)
		return 2
	}
	env := NewEnv(splitList(*masters), splitList(*filers), nil, stdout, stderr)
	defer env.Close()
	env.JSON = *output == "json"
	env.Yes = *yes

	if *script != "" {
		if !runLine(ctx, env, *script) {
			return 1
		}
		return 0
	}
	if f, ok := stdin.(*os.File); ok && readline.IsTerminal(int(f.Fd())) {
		return interactive(ctx, env, f, *history)
	}
	return runScript(ctx, env, stdin)
}

// runScript runs one command line per line of r; there is no terminal, so
// destructive commands need -y.
func runScript(ctx context.Context, env *Env, r io.Reader) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ok := true
	for sc.Scan() {
		if ctx.Err() != nil {
			break
		}
		line := strings.TrimSpace(sc.Text())
		if line == "exit" || line == "quit" {
			break
		}
		if !runLine(ctx, env, line) {
			ok = false
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(env.Err, "cairn shell: reading commands: %v\n", err)
		ok = false
	}
	if ctx.Err() != nil {
		ok = false
	}
	if !ok {
		return 1
	}
	return 0
}

// interactive runs the prompt on a terminal. Ctrl-C cancels the running
// command (or clears the line at the prompt); Ctrl-D or exit leaves.
func interactive(ctx context.Context, env *Env, tty *os.File, historyFile string) int {
	if historyFile == "" {
		historyFile = defaultHistoryFile()
	}
	if historyFile != "" {
		_ = os.MkdirAll(filepath.Dir(historyFile), 0o700)
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          "cairn> ",
		HistoryFile:     historyFile,
		AutoComplete:    completer(),
		InterruptPrompt: "^C",
		EOFPrompt:       "exit",
		Stdin:           tty,
		Stdout:          env.Out,
		Stderr:          env.Err,
	})
	if err != nil {
		fmt.Fprintf(env.Err, "cairn shell: cannot start the prompt: %v\n", err)
		return 1
	}
	defer rl.Close()
	env.Ask = func(prompt string) (string, error) {
		rl.SetPrompt(prompt)
		defer rl.SetPrompt("cairn> ")
		return rl.ReadlineWithDefault("")
	}
	fmt.Fprintf(env.Err, "cairn shell on masters %s, filers %s. Type help for the commands, exit to leave.\n",
		strings.Join(env.Masters, ","), strings.Join(env.Filers, ","))

	// The caller's context ends at the first Ctrl-C; at the prompt that
	// must cancel only the running command, so the shell watches the
	// signals itself and leaves on SIGTERM.
	base := context.WithoutCancel(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ok := true
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil { // io.EOF: Ctrl-D
			break
		}
		line = strings.TrimSpace(line)
		if line == "exit" || line == "quit" {
			break
		}
		cctx, cancel := context.WithCancel(base)
		done, finished := make(chan struct{}), make(chan struct{})
		term := false
		go func() {
			defer close(finished)
			select {
			case sig := <-sigs:
				term = sig == syscall.SIGTERM
				fmt.Fprintln(env.Err, "\ninterrupted; stopping the command")
				cancel()
			case <-done:
			}
		}()
		ok = runLine(cctx, env, line)
		close(done)
		<-finished
		cancel()
		if term {
			break
		}
	}
	if !ok {
		return 1
	}
	return 0
}

// defaultHistoryFile is under $XDG_STATE_HOME, else in the home directory.
func defaultHistoryFile() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "cairn", "shell_history")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cairn_shell_history")
	}
	return ""
}

// completer completes command names, and command names after help.
func completer() *readline.PrefixCompleter {
	var items, helpItems []readline.PrefixCompleterInterface
	for _, n := range commandNames() {
		items = append(items, readline.PcItem(n))
		helpItems = append(helpItems, readline.PcItem(n))
	}
	items = append(items, readline.PcItem("help", helpItems...), readline.PcItem("exit"))
	return readline.NewPrefixCompleter(items...)
}

// runLine runs every statement of one input line and reports whether all
// succeeded. Errors are printed on env.Err (and as JSON on env.Out in JSON
// mode). A cancelled context stops the remaining statements.
func runLine(ctx context.Context, env *Env, line string) bool {
	stmts, err := splitLine(line)
	if err != nil {
		reportError(env, "", err)
		return false
	}
	ok := true
	for _, words := range stmts {
		if ctx.Err() != nil {
			reportError(env, words[0], fmt.Errorf("not run: interrupted (%v)", ctx.Err()))
			ok = false
			continue
		}
		if err := runCommand(ctx, env, words[0], words[1:]); err != nil {
			reportError(env, words[0], err)
			ok = false
		}
	}
	return ok
}

func runCommand(ctx context.Context, env *Env, name string, args []string) error {
	if name == "help" || name == "?" {
		return help(env, args)
	}
	c, ok := registry[name]
	if !ok {
		msg := fmt.Sprintf("unknown command %q", name)
		if s := suggest(name); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		} else {
			msg += "; type help for the list of commands"
		}
		return errors.New(msg)
	}
	err := c.run(ctx, env, args)
	if err != nil && ctx.Err() != nil && !strings.Contains(err.Error(), "interrupted") {
		err = fmt.Errorf("interrupted: %w", err)
	}
	return err
}

// reportError prints a failed command's error for the operator.
func reportError(env *Env, cmd string, err error) {
	msg := strings.TrimPrefix(err.Error(), "shell: ")
	if env.JSON {
		_ = jsonLine(env.Out, map[string]string{"command": cmd, "error": msg})
	}
	if cmd != "" && !strings.HasPrefix(msg, cmd) {
		msg = cmd + ": " + msg
	}
	fmt.Fprintf(env.Err, "error: %s\n", msg)
}

// suggest returns the command names close to name (a typo or a prefix),
// else those in the same group ("fs.", "volume.").
func suggest(name string) []string {
	var close, group []string
	prefix, _, _ := strings.Cut(name, ".")
	for _, n := range commandNames() {
		switch {
		case strings.HasPrefix(n, name) || editDistance(n, name) <= 2:
			close = append(close, n)
		case prefix != "" && strings.HasPrefix(n, prefix+"."):
			group = append(group, n)
		}
	}
	if len(close) > 0 {
		return close
	}
	return group
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// splitList splits "a,b,,c" into ["a","b","c"].
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
