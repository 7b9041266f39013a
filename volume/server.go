package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/vfs"
)

// Config configures a volume server.
type Config struct {
	Dir        string
	IP         string
	Port       int    // HTTP; gRPC on Port+10000
	PublicURL  string // defaults to IP:Port
	Masters    []string
	DC, Rack   string
	MaxVolumes int
	Pulse      time.Duration // heartbeat interval, default 1s
	Security   *security.Config
	// Tokens verifies the data-path token of every write and delete (and
	// read, when Tokens.Read). Nil: Security's tokens; none means open.
	Tokens *security.Tokens
	Logger *slog.Logger
	FS     vfs.FS // nil: the real filesystem
}

// Server is a volume server: a Store served over HTTP (data path) and gRPC
// (replication, catch-up, administration), heartbeating to the master.
type Server struct {
	cfg    Config
	url    string // this server's identity, IP:Port
	store  *Store
	pool   *rpc.Pool
	httpc  *http.Client
	log    *slog.Logger
	met    *metrics
	kick   chan struct{} // asks the heartbeat loop for an early heartbeat
	syncMu sync.Mutex    // serialises catch-up passes

	// Lock order: syncMu, a volume's write gate, mu, the store's locks.
	mu struct {
		sync.Mutex
		leader    string                        // master leader HTTP address, "" unknown
		sizeLimit uint64                        // from the master
		locations map[uint32]*pb.VolumeLocation // the master's view of our volumes
		needSync  map[uint32]string             // volumes that may lack or hold unreplicated writes, with why
		lastNs    map[uint32]uint64             // highest append time handed out per volume
		gates     map[uint32]*sync.RWMutex      // per volume: replicated writes hold it shared
	}
}

// NewServer opens the store in cfg.Dir. Every volume starts out needing a
// catch-up pass: while this server was down its peers may have moved on.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Pulse <= 0 {
		cfg.Pulse = time.Second
	}
	if cfg.FS == nil {
		cfg.FS = vfs.OS
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DC == "" {
		cfg.DC = "dc1"
	}
	if cfg.Rack == "" {
		cfg.Rack = "rack1"
	}
	if cfg.MaxVolumes <= 0 {
		cfg.MaxVolumes = 8
	}
	if cfg.Tokens == nil {
		cfg.Tokens = cfg.Security.DataTokens()
	}
	if len(cfg.Masters) == 0 {
		return nil, errors.New("volume: no master address given; pass --master host:9333")
	}
	url := net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port))
	if cfg.PublicURL == "" {
		cfg.PublicURL = url
	}
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("volume: create data directory %s: %w", cfg.Dir, err)
	}
	st, err := OpenStore(cfg.FS, cfg.Dir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		url:   url,
		store: st,
		pool:  rpc.NewPool(cfg.Security),
		httpc: httpx.Client(cfg.Security, 60*time.Second),
		log:   cfg.Logger.With("component", "volume", "server", url),
		kick:  make(chan struct{}, 1),
	}
	s.mu.locations = make(map[uint32]*pb.VolumeLocation)
	s.mu.needSync = make(map[uint32]string)
	s.mu.lastNs = make(map[uint32]uint64)
	s.mu.gates = make(map[uint32]*sync.RWMutex)
	for _, v := range st.Volumes() {
		s.mu.needSync[v.Info().ID] = "server restarted"
	}
	s.met = newMetrics(s)
	return s, nil
}

// URL is the server's HTTP address, its identity in the cluster.
func (s *Server) URL() string { return s.url }

// Store exposes the underlying store (for tests and admin tools).
func (s *Server) Store() *Store { return s.store }

// Run serves until ctx is cancelled, then closes the store.
func (s *Server) Run(ctx context.Context) error {
	hl, gl, err := rpc.Listen("volume", s.url)
	if err != nil {
		return err
	}
	gs := rpc.NewServer(s.cfg.Security)
	pb.RegisterVolumeServer(gs, &grpcService{s: s})
	// A needle is held whole in memory while it is written; multipart
	// framing gets a MiB on top.
	hs := httpx.NewServer(s.routes(), s.cfg.Security, httpx.Limits{MaxBody: MaxNeedleSize + 1<<20})
	s.log.Info("volume server started", "http", s.url, "grpc", gl.Addr().String(), "dir", s.cfg.Dir, "masters", s.cfg.Masters)
	runErr := rpc.Serve(ctx, "volume", hs, hl, gs, gl, s.heartbeatLoop, s.syncLoop)
	s.pool.Close()
	if err := s.store.Close(); err != nil && runErr == nil {
		runErr = err
	}
	s.log.Info("volume server stopped")
	return runErr
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", s.handleReady)
	mux.HandleFunc("/status", s.handleStatus)
	mux.Handle("/metrics", promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", s.handleData)
	return s.met.instrument(mux)
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	leader := s.mu.leader
	s.mu.Unlock()
	if leader == "" {
		httpx.WriteError(w, http.StatusServiceUnavailable, "not registered with a master leader yet")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "master": leader})
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	free, _ := s.store.FreeBytes()
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"url":       s.url,
		"dc":        s.cfg.DC,
		"rack":      s.cfg.Rack,
		"freeBytes": free,
		"volumes":   s.volumeInfos(),
	})
}

// volumeInfos reports every volume as the master wants to see it.
func (s *Server) volumeInfos() []*pb.VolumeInfo {
	vols := s.store.Volumes()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pb.VolumeInfo, 0, len(vols))
	for _, v := range vols {
		in := v.Info()
		_, behind := s.mu.needSync[in.ID]
		var replicas []string
		if l := s.mu.locations[in.ID]; l != nil {
			replicas = slices.Clone(l.Replicas)
		}
		why := in.ReadOnlyReason
		if in.Err != "" {
			why = in.Err
		}
		out = append(out, &pb.VolumeInfo{
			Id: in.ID, Collection: in.Collection, Replication: in.Replication,
			Size: in.Size, NeedleCount: in.NeedleCount, DeletedCount: in.DeletedCount,
			DeletedBytes: in.DeletedBytes, InSync: !behind, ReadOnly: in.ReadOnly, Error: why,
			Replicas: replicas,
		})
	}
	return out
}

// markBehind records that volume id may differ from its peers, so it must
// not count for acknowledgements until a catch-up pass succeeds, and tells
// the master at once.
func (s *Server) markBehind(id uint32, why string) {
	s.mu.Lock()
	_, already := s.mu.needSync[id]
	s.mu.needSync[id] = why
	s.mu.Unlock()
	if !already {
		s.log.Warn("volume is out of sync with its replicas; it is read-only until a catch-up pass succeeds",
			"volume", id, "reason", why)
	}
	s.kickHeartbeat()
}

func (s *Server) kickHeartbeat() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// gate returns the lock that replicated writes to volume id hold shared.
// Taking it exclusively waits until every write that started before has
// finished (see drainWrites).
func (s *Server) gate(id uint32) *sync.RWMutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.mu.gates[id]
	if !ok {
		g = &sync.RWMutex{}
		s.mu.gates[id] = g
	}
	return g
}

// drainWrites waits until every replicated write of volume id in progress
// has finished. Called after the volume was marked behind, it guarantees
// that no write planned with an older replica set is still running: later
// ones see the mark and are refused.
func (s *Server) drainWrites(id uint32) {
	g := s.gate(id)
	g.Lock()
	g.Unlock() //nolint:staticcheck // an empty critical section is the barrier
}

// location returns the master's placement of volume id, or nil.
func (s *Server) location(id uint32) *pb.VolumeLocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.locations[id]
}

// locate returns the placement of volume id, asking the master leader when
// no heartbeat answer has carried it yet (a volume grown a moment ago).
func (s *Server) locate(ctx context.Context, id uint32) *pb.VolumeLocation {
	if loc := s.location(id); loc != nil {
		return loc
	}
	loc := s.lookup(ctx, id)
	if loc != nil {
		s.mu.Lock()
		if _, ok := s.mu.locations[id]; !ok {
			s.mu.locations[id] = loc
		}
		s.mu.Unlock()
	}
	return loc
}

// lookup asks the master leader where volume id lives, or returns nil.
func (s *Server) lookup(ctx context.Context, id uint32) *pb.VolumeLocation {
	s.mu.Lock()
	leader := s.mu.leader
	s.mu.Unlock()
	if leader == "" {
		return nil
	}
	conn, err := s.pool.Conn(leader)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := pb.NewMasterClient(conn).Lookup(ctx, &pb.LookupRequest{VolumeId: id})
	if err != nil || resp.Primary == "" {
		return nil
	}
	loc := &pb.VolumeLocation{VolumeId: id, Primary: resp.Primary, Writable: resp.Writable}
	for _, l := range resp.Locations {
		loc.Replicas = append(loc.Replicas, l.Url)
	}
	return loc
}

func (s *Server) behind(id uint32) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	why, ok := s.mu.needSync[id]
	return why, ok
}

// nextAppendNs hands out a strictly increasing append time for volume v.
func (s *Server) nextAppendNs(v *Volume) uint64 {
	id := v.Info().ID
	s.mu.Lock()
	last, ok := s.mu.lastNs[id]
	s.mu.Unlock()
	if !ok {
		for _, e := range v.Index() {
			last = max(last, e.AppendNs)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last = max(last, s.mu.lastNs[id])
	now := uint64(time.Now().UnixNano())
	next := max(now, last+1)
	s.mu.lastNs[id] = next
	return next
}

// peers returns the other replicas of volume id, per the master.
func peersOf(loc *pb.VolumeLocation, self string) []string {
	var out []string
	for _, r := range loc.GetReplicas() {
		if r != self {
			out = append(out, r)
		}
	}
	return out
}
