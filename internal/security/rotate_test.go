package security

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRotateUnderLoad swaps the server's and the client's certificates
// (same CA, new leaves) while requests keep flowing: none fails, and new
// connections present the new certificates on both sides. The server
// notices by watching its files; the client is told with Reload (SIGHUP).
func TestRotateUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path, err := Init(dir, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, err := LoadFile(path, RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	client, err := LoadFile(path, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	oldServer := server.Certificate().Leaf.SerialNumber
	oldClient := client.Certificate().Leaf.SerialNumber

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var lastClientSerial atomic.Pointer[string]
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := r.TLS.PeerCertificates[0].SerialNumber.String()
		lastClientSerial.Store(&s)
		w.Write([]byte("ok"))
	}), TLSConfig: server.ServerTLS()}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	watched := make(chan struct{})
	go func() { server.WatchFiles(ctx, 20*time.Millisecond, log); close(watched) }()

	tr := &http.Transport{TLSClientConfig: client.ClientTLS()}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "https://" + ln.Addr().String() + "/"
	get := func() (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	if s, err := get(); err != nil || s != oldServer.String() {
		t.Fatalf("before rotation: %v, serial %s want %s", err, s, oldServer)
	}

	var failures atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(); err != nil {
					// A retry must succeed.
					if _, err := get(); err != nil {
						failures.Add(1)
						t.Errorf("request failed twice during rotation: %v", err)
					}
				}
				tr.CloseIdleConnections() // every request handshakes anew
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	for _, role := range []string{RoleMaster, RoleClient} {
		if err := Renew(dir, role, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for server.Certificate().Leaf.SerialNumber.Cmp(oldServer) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not pick up its renewed certificate files")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()

	tr.CloseIdleConnections()
	s, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if s == oldServer.String() || s != server.Certificate().Leaf.SerialNumber.String() {
		t.Fatalf("after rotation the server presents %s (old %s)", s, oldServer)
	}
	if got := *lastClientSerial.Load(); got == oldClient.String() || got != client.Certificate().Leaf.SerialNumber.String() {
		t.Fatalf("after rotation the client presents %s (old %s)", got, oldClient)
	}
	// A broken pair (certificate of one role, key of another) is refused
	// and the working certificate stays.
	cancel()
	<-watched
	before := server.Certificate()
	server.KeyFile = client.KeyFile
	if err := server.Reload(); err == nil {
		t.Fatal("a certificate with the wrong key was loaded")
	}
	if server.Certificate() != before {
		t.Fatal("a failed reload replaced the certificate")
	}
}
