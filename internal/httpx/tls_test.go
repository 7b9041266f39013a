package httpx

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestTLSProtocols: a server with mutual TLS negotiates HTTP/2 with
// Client, as without the per-connection TLS configs, and still serves
// HTTP/1.1 clients.
func TestTLSProtocols(t *testing.T) {
	sec := testutil.Security(t, "client", []string{"127.0.0.1"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }), sec, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, s, ln)
	url := "https://" + ln.Addr().String() + "/"
	get := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(Client(sec, 10*time.Second)); got != "HTTP/2.0" {
		t.Errorf("Client spoke %s, want HTTP/2.0", got)
	}
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: sec.ClientTLS(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	if got := get(h1); got != "HTTP/1.1" {
		t.Errorf("an HTTP/1.1 client got %s", got)
	}
}
