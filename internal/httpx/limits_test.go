package httpx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs NewServer(h, nil, lim) on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler, lim Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, NewServer(h, nil, lim), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestInFlightBound fills the request slots: the next request gets 503 with
// Retry-After at once, and is served again once a slot frees.
func TestInFlightBound(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		w.Write([]byte("ok"))
	}), Limits{MaxInFlight: 2})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.Get("http://" + addr + "/block"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	<-entered
	<-entered
	start := time.Now()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request over the bound: %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v; excess requests must not queue", d)
	}
	close(release)
	wg.Wait()
	resp, err = http.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the slots freed: %v %v", err, resp)
	}
	resp.Body.Close()
}

// TestBodyBounds: a declared body over MaxBody gets 413 before the handler
// runs; an undeclared (chunked) one is cut at MaxBody; a body trickled
// slower than MinRate fails the handler's read at its deadline.
func TestBodyBounds(t *testing.T) {
	ran := make(chan string, 4)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			ran <- "cut"
			WriteError(w, http.StatusRequestEntityTooLarge, err.Error())
		case err != nil:
			ran <- "read error: " + err.Error()
			WriteError(w, http.StatusBadRequest, err.Error())
		default:
			ran <- fmt.Sprintf("read %d", len(b))
			w.Write([]byte("ok"))
		}
	}), Limits{MaxBody: 1000, MinRate: 4000, Grace: 300 * time.Millisecond})

	resp, err := http.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(make([]byte, 2000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 2000-byte body: %d, want 413", resp.StatusCode)
	}
	select {
	case got := <-ran:
		t.Fatalf("handler ran for an oversized declared body: %s", got)
	default:
	}
	// Chunked: no Content-Length.
	resp, err = http.Post("http://"+addr+"/", "application/octet-stream", io.MultiReader(strings.NewReader(strings.Repeat("x", 2000))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-ran; got != "cut" || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked 2000-byte body: handler %q, status %d", got, resp.StatusCode)
	}

	// 800 declared bytes at 4000 B/s may take 0.3s + 0.2s; send 10 B every 100ms.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n")
	start := time.Now()
	go func() {
		for range 80 {
			if _, err := c.Write([]byte("0123456789")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	select {
	case got := <-ran:
		if !strings.HasPrefix(got, "read error") || !strings.Contains(got, "slower than") {
			t.Fatalf("trickled body: handler got %q, want a slow-body read error", got)
		}
		if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
			t.Fatalf("trickled body cut after %v, want about 0.5s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a body trickled far below MinRate was never cut")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd")
	}
	return len(ents)
}

// TestSlowloris opens many connections that trickle their headers. Below the
// connection bound a normal client keeps being served promptly; above it the
// server holds no more than MaxConns descriptors, and sheds the slow
// connections at ReadHeaderTimeout so the normal client gets through.
func TestSlowloris(t *testing.T) {
	const maxConns, below, above = 64, 40, 100
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }),
		Limits{MaxConns: maxConns, ReadHeaderTimeout: time.Second})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	served := func() (time.Duration, error) {
		start := time.Now()
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			return 0, fmt.Errorf("answer %d %q", resp.StatusCode, b)
		}
		return time.Since(start), nil
	}
	if _, err := served(); err != nil { // warm up
		t.Fatal(err)
	}
	base := openFDs(t)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	closedByServer := make(chan struct{}, below+above)
	slow := func(n int) {
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
					closedByServer <- struct{}{}
					return
				}
				// The server answers a timed-out header with 408 or just
				// closes: either way a read ends.
				go func() {
					io.Copy(io.Discard, c)
					closedByServer <- struct{}{}
				}()
				for ctx.Err() == nil {
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		}
	}
	defer func() { cancel(); wg.Wait() }()

	slow(below)
	deadline := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(deadline) {
		d, err := served()
		if err != nil {
			t.Fatalf("normal client with %d slow connections open: %v", below, err)
		}
		if d > 300*time.Millisecond {
			t.Fatalf("normal client took %v with %d slow connections open", d, below)
		}
		time.Sleep(50 * time.Millisecond)
	}

	slow(above)
	time.Sleep(200 * time.Millisecond)
	// Our own client ends hold below+above descriptors; the server side must
	// hold no more than maxConns.
	if server := openFDs(t) - base - below - above; server > maxConns+4 {
		t.Fatalf("server holds about %d descriptors for %d slow connections; bound is %d", server, below+above, maxConns)
	}
	d, err := served()
	if err != nil {
		t.Fatalf("normal client behind %d slow connections: %v", below+above, err)
	}
	if d > 5*time.Second {
		t.Fatalf("normal client behind %d slow connections took %v", below+above, d)
	}
	timeout := time.After(10 * time.Second)
	for range below + above {
		select {
		case <-closedByServer:
		case <-timeout:
			t.Fatal("the server did not shed every slow connection within 10s")
		}
	}
}
