package mountsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client calls a mount service over its unix socket. Safe for concurrent
// use.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the service listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Mount asks the service to mount m (see MountRequest).
func (c *Client) Mount(ctx context.Context, m Mount) (*MountResponse, error) {
	var out MountResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/mount", MountRequest{Mount: m}, &out)
}

// Unmount asks the service to flush and unmount the mount at dir.
func (c *Client) Unmount(ctx context.Context, dir string) (*UnmountResponse, error) {
	var out UnmountResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/unmount", UnmountRequest{Dir: dir}, &out)
}

// List returns the mounts the service hosts.
func (c *Client) List(ctx context.Context) ([]MountStatus, error) {
	var out ListResponse
	return out.Mounts, c.do(ctx, http.MethodGet, "/v1/mounts", nil, &out)
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mount-service"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{Code: CodeUnavailable, Msg: fmt.Sprintf("cannot reach the mount service at %s (is `cairn mount-service` running on this node?): %v", c.socket, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &Error{Code: CodeUnavailable, Msg: fmt.Sprintf("reading the answer of the mount service at %s: %v", c.socket, err)}
	}
	if resp.StatusCode/100 != 2 {
		var e ErrorResponse
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			return &Error{Code: CodeInternal, Msg: fmt.Sprintf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))}
		}
		return &Error{Code: e.Code, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
