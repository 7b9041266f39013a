package filer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// Client talks to a filer group over gRPC. It retries a mutation after a
// leader change with the same session and sequence number, so the filer
// applies it at most once. Safe for concurrent use: each in-flight mutation
// holds a session of its own.
type Client struct {
	addrs []string
	pool  *rpc.Pool
	id    string // prefix of this client's session ids

	mu       sync.Mutex // guards sessions, nsess and next
	sessions []*clientSession
	nsess    int
	next     int // index into addrs of the filer to try first

	// oldReads: a filer answered that it does not know the attribute-only
	// reads (a version before them, during a rolling upgrade); Attr and
	// LookupAttr use the full reads from then on.
	oldReads atomic.Bool
}

type clientSession struct {
	id  string
	seq uint64
}

// NewClient returns a client for the filers at addrs (HTTP addresses; gRPC
// is at port+10000). sec nil means plaintext.
func NewClient(addrs []string, sec *security.Config) *Client {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Client{addrs: addrs, pool: rpc.NewPool(sec), id: hex.EncodeToString(b)}
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.pool.Close() }

func (c *Client) takeSession() *clientSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.sessions); n > 0 {
		s := c.sessions[n-1]
		c.sessions = c.sessions[:n-1]
		return s
	}
	c.nsess++
	return &clientSession{id: fmt.Sprintf("%s-%d", c.id, c.nsess)}
}

func (c *Client) putSession(s *clientSession) {
	c.mu.Lock()
	c.sessions = append(c.sessions, s)
	c.mu.Unlock()
}

// retryable reports whether a call may be sent again (to another filer).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// call runs fn against the filers, starting with the last that answered,
// retrying retryable errors with backoff until ctx ends or 30s pass.
func (c *Client) call(ctx context.Context, fn func(pb.FilerClient) error) error {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		idx := c.next % len(c.addrs)
		c.mu.Unlock()
		conn, err := c.pool.Conn(c.addrs[idx])
		if err == nil {
			err = fn(pb.NewFilerClient(conn))
		}
		if err == nil {
			return nil
		}
		lastErr = err
		if !retryable(err) {
			return err
		}
		c.mu.Lock()
		c.next = idx + 1
		c.mu.Unlock()
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(attempt+1, 10)) * 50 * time.Millisecond):
		}
	}
	return fmt.Errorf("filer: no filer could serve the request within 30s: %w", lastErr)
}

// Apply runs one mutation and returns its result. A Result with a non-zero
// Errno is returned as that syscall.Errno error along with the result.
func (c *Client) Apply(ctx context.Context, op Op) (*Result, error) {
	sess := c.takeSession()
	defer c.putSession(sess)
	sess.seq++
	return c.ApplyAs(ctx, sess.id, sess.seq, op)
}

// ApplyAs is Apply under the caller's session: the filer carries out a
// command at most once per session and sequence number, and answers a
// command sent again with the result it had (the inode as it is now). The
// caller must give each command a sequence number above the session's
// previous ones; a lower one is refused with ESTALE and not carried out.
func (c *Client) ApplyAs(ctx context.Context, session string, seq uint64, op Op) (*Result, error) {
	b, err := (&Command{ClientID: session, Seq: seq, Op: op}).Encode()
	if err != nil {
		return nil, err
	}
	var resp *pb.FilerApplyResponse
	err = c.call(ctx, func(fc pb.FilerClient) (err error) {
		resp, err = fc.Apply(ctx, &pb.FilerApplyRequest{Command: b})
		return err
	})
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if err := json.Unmarshal(resp.Result, res); err != nil {
		return nil, fmt.Errorf("filer: bad result from server: %w", err)
	}
	if res.Errno != 0 {
		return res, res.Errno
	}
	return res, nil
}

// Read runs a read operation and decodes its JSON answer into out. An errno
// from the filer is returned as a syscall.Errno.
func (c *Client) Read(ctx context.Context, req *pb.FilerReadRequest, out any) error {
	var resp *pb.FilerReadResponse
	err := c.call(ctx, func(fc pb.FilerClient) (err error) {
		resp, err = fc.Read(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	return decodeRead(resp, out)
}

// decodeRead turns a read's answer into its error or its value in out.
func decodeRead(resp *pb.FilerReadResponse, out any) error {
	if resp.Errno != 0 {
		return syscall.Errno(resp.Errno)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(resp.Json, out)
}

// GetAttr returns inode ino.
func (c *Client) GetAttr(ctx context.Context, ino uint64) (*Inode, error) {
	var in Inode
	return &in, c.Read(ctx, &pb.FilerReadRequest{Op: "getattr", Ino: ino}, &in)
}

// Lookup returns the inode named name in directory parent.
func (c *Client) Lookup(ctx context.Context, parent uint64, name string) (*Inode, error) {
	var in Inode
	return &in, c.Read(ctx, &pb.FilerReadRequest{Op: "lookup", Parent: parent, Name: name}, &in)
}

// Attr returns inode ino without its slice list (Slices is nil).
func (c *Client) Attr(ctx context.Context, ino uint64) (*Inode, error) {
	return c.attrRead(ctx, &pb.FilerReadRequest{Op: "attr", Ino: ino}, &pb.FilerReadRequest{Op: "getattr", Ino: ino})
}

// LookupAttr returns the inode named name in directory parent without its
// slice list (Slices is nil).
func (c *Client) LookupAttr(ctx context.Context, parent uint64, name string) (*Inode, error) {
	return c.attrRead(ctx, &pb.FilerReadRequest{Op: "lookup_attr", Parent: parent, Name: name},
		&pb.FilerReadRequest{Op: "lookup", Parent: parent, Name: name})
}

// attrRead runs an attribute-only read, or its full form on a filer that
// does not know it (EINVAL for an unknown operation; a request that is
// invalid in itself gets its EINVAL again from the full form).
func (c *Client) attrRead(ctx context.Context, req, full *pb.FilerReadRequest) (*Inode, error) {
	var in Inode
	if !c.oldReads.Load() {
		err := c.Read(ctx, req, &in)
		if err != syscall.EINVAL {
			return &in, err
		}
	}
	in = Inode{}
	if err := c.Read(ctx, full, &in); err != nil {
		return &in, err
	}
	c.oldReads.Store(true)
	in.Slices = nil
	return &in, nil
}

// ReadInline returns up to n bytes of inline data id at off (inline.go).
// It asks the member it reaches first without a leader check (inline
// data never changes once made); a member that has not applied the
// commit yet answers ENOENT, and then the leader is asked.
func (c *Client) ReadInline(ctx context.Context, id string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("filer: inline read of %d bytes at %d: %w", n, off, syscall.EINVAL)
	}
	req := &pb.FilerReadRequest{Op: "inline", Name: id, Offset: uint64(off), Length: uint64(min(n, MaxInlineBytes)), StaleOk: true}
	var b []byte
	err := c.Read(ctx, req, &b)
	if errors.Is(err, syscall.ENOENT) {
		req.StaleOk = false
		err = c.Read(ctx, req, &b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read inline data %s: %w", ErrData, id, err)
	}
	return b, nil
}

// Resolve returns the inode at an absolute path.
func (c *Client) Resolve(ctx context.Context, path string) (*Inode, error) {
	var in Inode
	return &in, c.Read(ctx, &pb.FilerReadRequest{Op: "resolve", Path: path}, &in)
}

// ReadDir returns up to limit entries of directory ino after name after.
func (c *Client) ReadDir(ctx context.Context, ino uint64, after string, limit int) ([]DirEntry, error) {
	var out []DirEntry
	return out, c.Read(ctx, &pb.FilerReadRequest{Op: "readdir", Ino: ino, After: after, Limit: int32(limit)}, &out)
}

// CheckState checks the leader's state against every invariant the filer
// keeps (see State.Check) and reports what it found. It reads the whole
// state: minutes on a very large one.
func (c *Client) CheckState(ctx context.Context) (*CheckReport, error) {
	var r CheckReport
	return &r, c.Read(ctx, &pb.FilerReadRequest{Op: "check"}, &r)
}

// CheckOwnState has the filer this client reaches check its own copy of
// the state (a read any member serves), not the leader's. Give the client
// one address to choose the member.
func (c *Client) CheckOwnState(ctx context.Context) (*CheckReport, error) {
	var r CheckReport
	return &r, c.Read(ctx, &pb.FilerReadRequest{Op: "check", StaleOk: true}, &r)
}

// CheckMember has the one filer fc is connected to check its own copy of
// the state, not the leader's, and returns its report. Unlike a Client it
// does not retry: a filer that does not answer is reported at once.
func CheckMember(ctx context.Context, fc pb.FilerClient) (*CheckReport, error) {
	resp, err := fc.Read(ctx, &pb.FilerReadRequest{Op: "check", StaleOk: true})
	if err != nil {
		return nil, err
	}
	var r CheckReport
	if err := decodeRead(resp, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Statfs returns the quota limits and usage that apply to ino.
func (c *Client) Statfs(ctx context.Context, ino uint64) (*Statfs, error) {
	var out Statfs
	return &out, c.Read(ctx, &pb.FilerReadRequest{Op: "statfs", Ino: ino}, &out)
}

// Assign asks the filer for a needle id (the filer forwards to the master).
func (c *Client) Assign(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error) {
	var resp *pb.AssignResponse
	err := c.call(ctx, func(fc pb.FilerClient) (err error) {
		resp, err = fc.AssignVolume(ctx, req)
		return err
	})
	return resp, err
}

// LookupVolume asks the filer where volume vid lives.
func (c *Client) LookupVolume(ctx context.Context, vid uint32) (*pb.LookupResponse, error) {
	var resp *pb.LookupResponse
	err := c.call(ctx, func(fc pb.FilerClient) (err error) {
		resp, err = fc.LookupVolume(ctx, &pb.LookupRequest{VolumeId: vid})
		return err
	})
	return resp, err
}

// Subscribe streams change events under root until ctx ends or the stream
// breaks (then the caller resubscribes and revalidates what it cached).
// The data commits (CommitSlices) this client made are left out: whoever
// made them through it knows them already.
func (c *Client) Subscribe(ctx context.Context, root uint64) (pb.Filer_SubscribeClient, error) {
	var stream pb.Filer_SubscribeClient
	err := c.call(ctx, func(fc pb.FilerClient) (err error) {
		stream, err = fc.Subscribe(ctx, &pb.SubscribeRequest{RootIno: root, SkipDataCommitsOf: c.id})
		return err
	})
	return stream, err
}

// Addrs returns the filer addresses the client uses.
func (c *Client) Addrs() string { return strings.Join(c.addrs, ",") }
