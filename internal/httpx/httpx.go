// Package httpx holds the HTTP plumbing shared by every server: JSON replies,
// JSON errors, servers with timeouts and TLS, and matching clients.
package httpx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cairn-storage/cairn/internal/security"
)

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes {"error": msg} with the given status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// Server returns an http.Server serving h with the default Limits and
// mutual TLS when sec is not nil.
func Server(h http.Handler, sec *security.Config) *http.Server {
	return NewServer(h, sec, Limits{})
}

// Serve serves s on ln until ctx ends, then shuts it down gracefully.
// It returns nil after a shutdown caused by ctx.
func Serve(ctx context.Context, s *http.Server, ln net.Listener) error {
	if n, ok := connLimits.LoadAndDelete(s); ok {
		ln = newLimitListener(ln, n.(int))
	}
	errc := make(chan error, 1)
	go func() {
		if s.TLSConfig != nil {
			errc <- s.ServeTLS(ln, "", "")
		} else {
			errc <- s.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			slog.Warn("http server did not shut down cleanly", "addr", ln.Addr().String(), "err", err)
			s.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// Client returns an HTTP client speaking TLS when sec is not nil. Every
// new connection takes the certificate and CA bundle sec holds at that
// moment, so the client follows reloads (certificate and CA rotation).
func Client(sec *security.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if sec != nil {
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			cfg := sec.ClientTLS()
			cfg.ServerName = host
			cfg.NextProtos = []string{"h2", "http/1.1"}
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, cfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		}
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Scheme is "https" when sec is not nil, else "http".
func Scheme(sec *security.Config) string {
	if sec != nil {
		return "https"
	}
	return "http"
}

// Instrument calls observe after every request with its status and duration.
func Instrument(h http.Handler, observe func(r *http.Request, code int, d time.Duration)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		observe(r, sw.code, time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
