package httpx

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
)

// Limits bounds what clients can make one server spend: connections
// (file descriptors), requests in flight (goroutines and buffers), body
// sizes and time. Zero fields take the Default* values. See
// docs/security.md for how the numbers were chosen.
type Limits struct {
	// MaxConns bounds open connections. Further connections wait in the
	// kernel's accept backlog (no descriptor is spent on them) until one
	// closes.
	MaxConns int
	// MaxInFlight bounds requests being served at once; more are answered
	// 503 with Retry-After at once.
	MaxInFlight int
	// MaxBody bounds a request body; larger ones get 413. Negative: no
	// bound (the filer, which streams uploads into needles).
	MaxBody int64
	// BufferedBody is how much of one request body a handler may hold in
	// memory (the volume server holds a whole needle, the filer one
	// chunk); default MaxBody, or 8 MiB when MaxBody is unbounded.
	BufferedBody int64
	// MaxBodyBytes bounds the sum, over requests in flight, of their
	// declared body length capped at BufferedBody: uploads beyond it get
	// 503 with Retry-After instead of exhausting memory. One request
	// always fits alone.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds the TLS handshake plus the request headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long.
	IdleTimeout time.Duration
	// MinRate is the average rate, in bytes per second, a client must keep
	// up when sending a body or receiving a response, after Grace.
	MinRate int64
	// Grace is the time every body and every response gets on top of what
	// MinRate allows (slow starts, a handler waiting on a quorum).
	Grace time.Duration
}

// Defaults for zero Limits fields.
const (
	DefaultMaxConns          = 4096
	DefaultMaxInFlight       = 512
	DefaultMaxBody           = 1 << 20
	DefaultMaxBodyBytes      = 1 << 30
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMinRate           = 128 << 10 // 1 Mbit/s: 64 MiB in 512 s
	DefaultGrace             = 30 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxInFlight <= 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.MaxBody == 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.BufferedBody <= 0 {
		l.BufferedBody = l.MaxBody
		if l.MaxBody < 0 {
			l.BufferedBody = 8 << 20
		}
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MinRate <= 0 {
		l.MinRate = DefaultMinRate
	}
	if l.Grace <= 0 {
		l.Grace = DefaultGrace
	}
	return l
}

// connLimits remembers the connection bound of every server NewServer built,
// for Serve to apply to its listener.
var connLimits sync.Map // *http.Server -> int

// NewServer returns an http.Server serving h with lim (zero fields take the
// defaults) and mutual TLS when sec is not nil. Serve it with Serve, which
// applies the connection bound.
func NewServer(h http.Handler, sec *security.Config, lim Limits) *http.Server {
	lim = lim.withDefaults()
	s := &http.Server{
		Handler:           limit(h, lim),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		TLSConfig:         sec.ServerTLS(),
		// Refused TLS handshakes and the like, as operator log lines.
		ErrorLog: slog.NewLogLogger(slog.Default().Handler().WithAttrs([]slog.Attr{slog.String("component", "http")}), slog.LevelWarn),
	}
	connLimits.Store(s, lim.MaxConns)
	return s
}

// limit wraps h with the per-request bounds of lim.
func limit(h http.Handler, lim Limits) http.Handler {
	sem := make(chan struct{}, lim.MaxInFlight)
	var bodyMu sync.Mutex // guards bodyBytes
	var bodyBytes int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			w.Header().Set("Retry-After", "1")
			WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("server busy: %d requests in flight; retry in a second", lim.MaxInFlight))
			return
		}
		if lim.MaxBody >= 0 && r.ContentLength > lim.MaxBody {
			w.Header().Set("Connection", "close")
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over this server's limit of %d", r.ContentLength, lim.MaxBody))
			return
		}
		if charge := bodyCharge(r, lim); charge > 0 {
			bodyMu.Lock()
			ok := bodyBytes == 0 || bodyBytes+charge <= lim.MaxBodyBytes
			if ok {
				bodyBytes += charge
			}
			bodyMu.Unlock()
			if !ok {
				w.Header().Set("Retry-After", "1")
				WriteError(w, http.StatusServiceUnavailable, "server busy: too many large uploads in flight; retry in a second")
				return
			}
			defer func() { bodyMu.Lock(); bodyBytes -= charge; bodyMu.Unlock() }()
		}
		start := time.Now()
		rc := http.NewResponseController(w)
		d := &deadlines{rc: rc, start: start, lim: lim}
		if r.Body != nil && r.Body != http.NoBody {
			body := r.Body
			if lim.MaxBody >= 0 {
				body = http.MaxBytesReader(w, body, lim.MaxBody)
			}
			r.Body = &deadlineBody{ReadCloser: body, d: d, expect: max(r.ContentLength, 0)}
			d.extendRead(0, max(r.ContentLength, 0))
		}
		d.extendWrite(0)
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, d: d}, r)
	})
}

// bodyCharge is what r's body counts against MaxBodyBytes.
func bodyCharge(r *http.Request, lim Limits) int64 {
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	n := r.ContentLength
	if n < 0 {
		n = lim.BufferedBody
	}
	return min(n, lim.BufferedBody)
}

// deadlines moves a request's read and write deadlines as its body and
// response progress: a transfer of n bytes may take Grace + n/MinRate.
type deadlines struct {
	rc    *http.ResponseController
	start time.Time
	lim   Limits
	// written counts response bytes; one request's handler writes from
	// one goroutine at a time, but be safe with an atomic.
	written atomic.Int64
}

// allowance is how long after start a transfer of n bytes may end.
func (d *deadlines) allowance(n int64) time.Time {
	return d.start.Add(d.lim.Grace + time.Duration(float64(n)/float64(d.lim.MinRate)*float64(time.Second)))
}

func (d *deadlines) extendRead(read, expect int64) {
	// Unknown lengths (chunked uploads) get a window ahead of what arrived.
	_ = d.rc.SetReadDeadline(d.allowance(max(expect, read+d.lim.MinRate*int64(d.lim.Grace/time.Second))))
}

func (d *deadlines) extendWrite(n int) {
	w := d.written.Add(int64(n))
	_ = d.rc.SetWriteDeadline(d.allowance(w + d.lim.MinRate*int64(d.lim.Grace/time.Second)))
}

type deadlineBody struct {
	io.ReadCloser
	d      *deadlines
	expect int64
	read   int64
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if n > 0 && b.expect == 0 {
		b.d.extendRead(b.read, 0)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("httpx: request body arrived slower than %d bytes/s: %w", b.d.lim.MinRate, err)
	}
	return n, err
}

type deadlineWriter struct {
	http.ResponseWriter
	d *deadlines
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.d.extendWrite(len(p))
	return w.ResponseWriter.Write(p)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *deadlineWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitListener bounds the connections accepted and not yet closed.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	open   atomic.Int64 // connections accepted and not closed
	done   chan struct{}
	closed sync.Once
}

// LimitListener returns ln accepting at most n connections open at once;
// further ones wait in the kernel's accept backlog, without a descriptor,
// until one closes. The gRPC and Raft ports use it as HTTP servers do.
func LimitListener(ln net.Listener, n int) net.Listener { return newLimitListener(ln, n) }

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.open.Add(1)
	return &limitConn{Conn: c, release: func() { l.open.Add(-1); <-l.slots }}, nil
}

// Close also wakes an Accept waiting for a free slot.
func (l *limitListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
