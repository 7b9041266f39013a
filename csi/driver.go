// Package csi is the cairn CSI plugin: the identity, controller and node
// services of the Container Storage Interface (v1) on a unix socket.
//
// A CSI volume is the filer directory /csi/<volume id>, a quota root whose
// byte limit is the volume's capacity. Snapshots and clones are the filer's
// copy-on-write snapshots and clones of that directory. The node service
// never hosts a FUSE mount itself: it asks the mount service (package
// mountsvc, a separate long-lived process) to mount a volume at its staging
// path, and bind-mounts the staging path onto each target path. So the node
// plugin can be restarted at any moment without disturbing the mounts.
package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/csi/mountsvc"
	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
)

// DriverName is the CSI driver name cairn registers under.
const DriverName = "cairn.csi.storage"

// Modes of the plugin.
const (
	ModeController = "controller"
	ModeNode       = "node"
	ModeMonolith   = "monolith"
)

// Config configures the plugin.
type Config struct {
	// Endpoint is where to serve: unix:///path/csi.sock or a plain path.
	Endpoint string
	// Mode is controller, node or monolith (both).
	Mode string
	// Filers are the filer HTTP addresses (gRPC at port+10000).
	Filers []string
	// Masters are the master HTTP addresses, for GetCapacity (optional:
	// without them GET_CAPACITY is not offered).
	Masters []string
	// NodeID is this node's id (node and monolith modes).
	NodeID string
	// MountSocket is the mount service's unix socket (node and monolith).
	MountSocket string
	// MetricsAddr, if set, is where /metrics (Prometheus) is served over
	// plain HTTP.
	MetricsAddr string
	// Version is reported by GetPluginInfo (must not be empty for Nomad).
	Version  string
	Logger   *slog.Logger
	Security *security.Config
}

// Driver implements the CSI services. Safe for concurrent use.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg    Config
	log    *slog.Logger
	filer  *filer.Client
	master *rpc.Pool
	mounts *mountsvc.Client
	met    *metrics

	locks keyedMutex // per volume or snapshot name: one operation at a time

	sizeMu sync.Mutex        // guards sizes
	sizes  map[uint64]uint64 // filer snapshot id -> bytes (snapshots are immutable)
}

// New checks cfg and returns a driver. Close releases it.
func New(cfg Config) (*Driver, error) {
	switch cfg.Mode {
	case ModeController, ModeNode, ModeMonolith:
	case "":
		cfg.Mode = ModeMonolith
	default:
		return nil, fmt.Errorf("csi: --mode %q: want controller, node or monolith", cfg.Mode)
	}
	if len(cfg.Filers) == 0 {
		return nil, errors.New("csi: no filer address given; pass --filer host:8888")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Driver{cfg: cfg, log: cfg.Logger.With("component", "csi", "mode", cfg.Mode), sizes: map[uint64]uint64{}, met: newMetrics()}
	if d.serves(ModeNode) {
		if cfg.NodeID == "" {
			return nil, errors.New("csi: node mode needs --nodeid (for example the Nomad node name: ${node.unique.name})")
		}
		if cfg.MountSocket == "" {
			return nil, errors.New("csi: node mode needs --mount-socket, the unix socket of `cairn mount-service` on this node")
		}
		d.mounts = mountsvc.NewClient(cfg.MountSocket)
	}
	d.filer = filer.NewClient(cfg.Filers, cfg.Security)
	if len(cfg.Masters) > 0 {
		d.master = rpc.NewPool(cfg.Security)
	}
	return d, nil
}

// Close releases the driver's connections.
func (d *Driver) Close() error {
	if d.mounts != nil {
		d.mounts.Close()
	}
	if d.master != nil {
		d.master.Close()
	}
	return d.filer.Close()
}

// serves reports whether the driver serves the role (controller or node).
func (d *Driver) serves(role string) bool {
	return d.cfg.Mode == ModeMonolith || d.cfg.Mode == role
}

// Run serves the plugin on cfg.Endpoint until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var metricsErr <-chan error
	if cfg.MetricsAddr != "" {
		if metricsErr, err = d.serveMetrics(ctx, cfg.MetricsAddr); err != nil {
			return err
		}
	}
	ln, err := Listen(cfg.Endpoint)
	if err != nil {
		return err
	}
	err = d.Serve(ctx, ln)
	cancel()
	if metricsErr != nil {
		if merr := <-metricsErr; merr != nil && err == nil {
			err = fmt.Errorf("csi: metrics server: %w", merr)
		}
	}
	return err
}

// Listen listens on a CSI endpoint (unix:///path, unix:/path or /path),
// removing a stale socket file first.
func Listen(endpoint string) (net.Listener, error) {
	path, err := socketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("csi: socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("csi: remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("csi: listen on %s: %w", path, err)
	}
	return ln, nil
}

func socketPath(endpoint string) (string, error) {
	switch {
	case endpoint == "":
		return "", errors.New("csi: no endpoint; pass --endpoint unix:///csi/csi.sock or set CSI_ENDPOINT")
	case strings.HasPrefix(endpoint, "unix://"):
		endpoint = strings.TrimPrefix(endpoint, "unix://")
	case strings.HasPrefix(endpoint, "unix:"):
		endpoint = strings.TrimPrefix(endpoint, "unix:")
	case strings.Contains(endpoint, "://"):
		return "", fmt.Errorf("csi: endpoint %q: only unix sockets are served (unix:///path/csi.sock)", endpoint)
	}
	if !filepath.IsAbs(endpoint) {
		return "", fmt.Errorf("csi: endpoint %q: the socket path must be absolute", endpoint)
	}
	return endpoint, nil
}

// Serve serves the services of the driver's mode on ln until ctx ends.
func (d *Driver) Serve(ctx context.Context, ln net.Listener) error {
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.logCall))
	csi.RegisterIdentityServer(srv, d)
	if d.serves(ModeController) {
		csi.RegisterControllerServer(srv, d)
	}
	if d.serves(ModeNode) {
		csi.RegisterNodeServer(srv, d)
	}
	d.log.Info("CSI plugin serving", "endpoint", ln.Addr().String(), "driver", DriverName, "version", d.cfg.Version,
		"filers", d.filer.Addrs(), "node_id", d.cfg.NodeID, "mount_socket", d.cfg.MountSocket)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("csi: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		srv.Stop()
	}
	d.log.Info("CSI plugin stopped")
	return nil
}

// logCall logs every call with the volume or snapshot it is about and its
// outcome (successful health checks at debug level). The request itself is logged at debug level with its secrets
// replaced by "***stripped***".
func (d *Driver) logCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	attrs := []any{"call", method}
	attrs = append(attrs, subjectAttrs(req)...)
	d.log.Debug("CSI call", append(attrs, "request", protosanitizer.StripSecrets(req).String())...)
	resp, err := handler(ctx, req)
	took := time.Since(start)
	d.met.observe(method, status.Code(err), took)
	attrs = append(attrs, "took", took.Round(time.Millisecond))
	switch {
	case err == nil && quietCalls[method]:
		d.log.Debug("CSI call succeeded", attrs...)
	case err == nil:
		d.log.Info("CSI call succeeded", attrs...)
	default:
		d.log.Warn("CSI call failed", append(attrs, "code", status.Code(err).String(), "err", status.Convert(err).Message())...)
	}
	return resp, err
}

// quietCalls are the calls COs make periodically (health checks); their
// successes are logged at debug level only.
var quietCalls = map[string]bool{
	"Probe": true, "GetPluginInfo": true, "GetPluginCapabilities": true,
	"ControllerGetCapabilities": true, "NodeGetCapabilities": true, "NodeGetInfo": true,
}

// subjectAttrs picks the ids a request is about (volume, snapshot, name).
func subjectAttrs(req any) []any {
	var out []any
	v := reflect.ValueOf(req)
	for _, f := range []struct{ getter, key string }{
		{"GetVolumeId", "volume"}, {"GetName", "name"}, {"GetSourceVolumeId", "source_volume"}, {"GetSnapshotId", "snapshot"},
		{"GetStagingTargetPath", "staging"}, {"GetTargetPath", "target"},
	} {
		m := v.MethodByName(f.getter)
		if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 || m.Type().Out(0).Kind() != reflect.String {
			continue
		}
		if s := m.Call(nil)[0].String(); s != "" {
			out = append(out, f.key, s)
		}
	}
	return out
}

// keyedMutex is a set of mutexes by name.
type keyedMutex struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks name and returns its unlock function.
func (k *keyedMutex) lock(name string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[name]
	if e == nil {
		e = &keyedEntry{}
		k.m[name] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, name)
		}
		k.mu.Unlock()
	}
}
