package rpc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/cairn-storage/cairn/internal/httpx"
)

// Listen opens a server's HTTP listener on addr and its gRPC listener on
// GRPCAddr(addr). component names the server in errors.
func Listen(component, addr string) (httpLn, grpcLn net.Listener, err error) {
	gaddr, err := GRPCAddr(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", component, err)
	}
	httpLn, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: listen on %s: %w (is another server using the port?)", component, addr, err)
	}
	grpcLn, err = net.Listen("tcp", gaddr)
	if err != nil {
		httpLn.Close()
		return nil, nil, fmt.Errorf("%s: listen on %s for gRPC: %w (is another server using the port?)", component, gaddr, err)
	}
	return httpLn, grpcLn, nil
}

// Serve serves hs on httpLn and gs on grpcLn and runs each loop in its own
// goroutine, until ctx ends or a server fails. It then stops gRPC
// gracefully (forcibly after 5s) and HTTP, waits for the loops to return,
// and returns the first server error (nil after a cancellation).
func Serve(ctx context.Context, component string, hs *http.Server, httpLn net.Listener, gs *grpc.Server, grpcLn net.Listener, loops ...func(context.Context)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var servers, workers sync.WaitGroup
	servers.Add(2)
	go func() {
		defer servers.Done()
		if err := httpx.Serve(ctx, hs, httpLn); err != nil {
			errc <- fmt.Errorf("%s: HTTP server: %w", component, err)
		}
	}()
	go func() {
		defer servers.Done()
		if err := gs.Serve(httpx.LimitListener(grpcLn, MaxConns)); err != nil {
			errc <- fmt.Errorf("%s: gRPC server: %w", component, err)
		}
	}()
	for _, loop := range loops {
		workers.Add(1)
		go func() { defer workers.Done(); loop(ctx) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	servers.Wait()
	workers.Wait()
	return runErr
}
