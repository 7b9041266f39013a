package shell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// ErrNotConfirmed means a destructive command was not confirmed; nothing
// was changed.
var ErrNotConfirmed = errors.New("not confirmed; nothing was changed")

// statusTimeout bounds one status call to one server.
const statusTimeout = 5 * time.Second

// Env is what commands run against: the cluster's clients and the output.
// One command runs at a time; Env is not safe for concurrent commands.
type Env struct {
	Out  io.Writer // results: text tables or one JSON document per command
	Err  io.Writer // progress, prompts and error messages
	JSON bool      // print results as JSON
	Yes  bool      // destructive commands run without asking

	// Ask, if set, prompts on the operator's terminal and returns the
	// answer line. Nil means there is no terminal to ask on.
	Ask func(prompt string) (string, error)

	Masters []string // master HTTP addresses
	Filers  []string // filer HTTP addresses

	sec  *security.Config
	pool *rpc.Pool

	mu    sync.Mutex // guards filer and data
	filer *filer.Client
	data  *filer.DataClient
}

// NewEnv returns an environment for the given masters and filers (HTTP
// addresses; gRPC is at port+10000). sec nil means plaintext.
func NewEnv(masters, filers []string, sec *security.Config, out, errOut io.Writer) *Env {
	return &Env{Out: out, Err: errOut, Masters: masters, Filers: filers, sec: sec, pool: rpc.NewPool(sec)}
}

// Close releases the connections.
func (e *Env) Close() error {
	e.mu.Lock()
	if e.filer != nil {
		e.filer.Close()
	}
	e.mu.Unlock()
	return e.pool.Close()
}

// Filer returns the filer client, or an error saying how to configure one.
func (e *Env) Filer() (*filer.Client, error) {
	if len(e.Filers) == 0 {
		return nil, errors.New("shell: no filer configured; start the shell with --filer host:8888")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.filer == nil {
		e.filer = filer.NewClient(e.Filers, e.sec)
	}
	return e.filer, nil
}

// Data returns the client reading needle bytes from volume servers, which
// it finds through the filer.
func (e *Env) Data() (*filer.DataClient, error) {
	fc, err := e.Filer()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.data == nil {
		e.data = &filer.DataClient{
			Assign: fc.Assign, Lookup: fc.LookupVolume, Inline: fc.ReadInline,
			HTTP: httpx.Client(e.sec, 60*time.Second), Scheme: httpx.Scheme(e.sec),
		}
	}
	return e.data, nil
}

// Emit prints a command's result: v as one line of JSON in JSON mode,
// else whatever text writes.
func (e *Env) Emit(v any, text func(w io.Writer) error) error {
	if e.JSON {
		return json.NewEncoder(e.Out).Encode(v)
	}
	return text(e.Out)
}

// Progressf reports progress of a long operation on Err.
func (e *Env) Progressf(format string, args ...any) {
	fmt.Fprintf(e.Err, format+"\n", args...)
}

// Confirm asks the operator to confirm a destructive action described by
// what ("remove /a/b and everything below it"). It returns nil when the
// shell runs with -y or the operator answers y, ErrNotConfirmed otherwise.
func (e *Env) Confirm(what string) error {
	if e.Yes {
		return nil
	}
	if e.Ask == nil {
		return fmt.Errorf("refusing to %s without confirmation: there is no terminal to ask on; run the shell with -y to confirm in advance (%w)", what, ErrNotConfirmed)
	}
	ans, err := e.Ask(fmt.Sprintf("%s? [y/N] ", upperFirst(what)))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotConfirmed, err)
	}
	switch strings.ToLower(strings.TrimSpace(ans)) {
	case "y", "yes":
		return nil
	}
	return ErrNotConfirmed
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// masterClient returns the gRPC client of the master at an HTTP address.
func (e *Env) masterClient(addr string) (pb.MasterClient, error) {
	conn, err := e.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewMasterClient(conn), nil
}

// volumeClient returns the gRPC client of the volume server at an HTTP address.
func (e *Env) volumeClient(addr string) (pb.VolumeClient, error) {
	conn, err := e.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewVolumeClient(conn), nil
}

// filerClientAt returns the gRPC client of one filer at an HTTP address.
func (e *Env) filerClientAt(addr string) (pb.FilerClient, error) {
	conn, err := e.pool.Conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewFilerClient(conn), nil
}

// masterStatus asks one master for its cluster status.
func (e *Env) masterStatus(ctx context.Context, addr string) (*pb.ClusterStatusResponse, error) {
	mc, err := e.masterClient(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return mc.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
}

// leaderStatus returns the cluster status as the master leader sees it
// (only the leader knows liveness and writability), following a
// follower's pointer to the leader.
func (e *Env) leaderStatus(ctx context.Context) (*pb.ClusterStatusResponse, error) {
	if len(e.Masters) == 0 {
		return nil, errors.New("shell: no master configured; start the shell with --master host:9333")
	}
	var errs []string
	tried := map[string]bool{}
	queue := append([]string(nil), e.Masters...)
	for len(queue) > 0 {
		addr := queue[0]
		queue = queue[1:]
		if tried[addr] {
			continue
		}
		tried[addr] = true
		st, err := e.masterStatus(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Sprintf("%s: %s", addr, rpcMessage(err)))
			continue
		}
		if st.IsLeader {
			return st, nil
		}
		if st.Leader != "" {
			queue = append([]string{st.Leader}, queue...)
		} else {
			errs = append(errs, addr+": follower that knows no leader")
		}
	}
	return nil, fmt.Errorf("shell: no master leader found (%s); check that a majority of masters is running and reachable, or pass the right --master",
		strings.Join(errs, "; "))
}

// rpcMessage turns a gRPC error into its message with the code in words,
// without the "rpc error: code = ... desc =" wrapping.
func rpcMessage(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unavailable:
		return "unreachable (" + st.Message() + ")"
	case codes.DeadlineExceeded:
		return "timed out (" + st.Message() + ")"
	}
	return st.Message()
}
