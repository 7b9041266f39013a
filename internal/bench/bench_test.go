package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// fakeCluster is an in-memory master plus one volume server.
type fakeCluster struct {
	t      *testing.T
	master *httptest.Server
	volume *httptest.Server

	mu      sync.Mutex
	needles map[fid.FileID][]byte
	nextKey uint64

	assigns     atomic.Int64
	puts        atomic.Int64
	gets        atomic.Int64
	replication atomic.Value // last replication asked for
	collection  atomic.Value

	flipOneRead atomic.Bool   // flip a byte in the first read
	failPutEach int64         // every failPutEach-th PUT fails with 500 (0: never)
	onPut       func(n int64) // called after each stored PUT
}

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	c := &fakeCluster{t: t, needles: make(map[fid.FileID][]byte), nextKey: 1}
	c.volume = httptest.NewServer(http.HandlerFunc(c.serveVolume))
	c.master = httptest.NewServer(http.HandlerFunc(c.serveMaster))
	t.Cleanup(func() {
		c.master.Close()
		c.volume.Close()
	})
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (c *fakeCluster) serveMaster(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/dir/assign" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such path"})
		return
	}
	c.assigns.Add(1)
	c.replication.Store(r.URL.Query().Get("replication"))
	c.collection.Store(r.URL.Query().Get("collection"))
	n := 1
	if s := r.URL.Query().Get("count"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		if err != nil || n <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad count"})
			return
		}
	}
	c.mu.Lock()
	key := c.nextKey
	c.nextKey += uint64(n)
	c.mu.Unlock()
	id := fid.FileID{Volume: 3, Key: key, Cookie: 0x1637037d}
	host := strings.TrimPrefix(c.volume.URL, "http://")
	writeJSON(w, http.StatusOK, map[string]any{"fid": id.String(), "url": host, "publicUrl": host, "count": n})
}

func (c *fakeCluster) serveVolume(w http.ResponseWriter, r *http.Request) {
	id, err := fid.Parse(r.URL.Path)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		n := c.puts.Add(1)
		if c.failPutEach > 0 && n%c.failPutEach == 0 {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "disk is full"})
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		c.mu.Lock()
		_, dup := c.needles[id]
		c.needles[id] = body
		c.mu.Unlock()
		if dup {
			c.t.Errorf("needle %s written twice", id)
		}
		writeJSON(w, http.StatusCreated, map[string]any{"size": len(body), "eTag": "x"})
		if c.onPut != nil {
			c.onPut(n)
		}
	case http.MethodGet:
		c.gets.Add(1)
		c.mu.Lock()
		data, ok := c.needles[id]
		c.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
			return
		}
		if c.flipOneRead.CompareAndSwap(true, false) {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0x40
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
	default:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method"})
	}
}

func (c *fakeCluster) masterAddr() string { return strings.TrimPrefix(c.master.URL, "http://") }

func TestWritesAndReadsAllNeedlesWithBatchedAssigns(t *testing.T) {
	c := newFakeCluster(t)
	var out, prog bytes.Buffer
	const n, k = 1000, 64
	res, err := Run(context.Background(), Config{
		Master: c.masterAddr(), N: n, Concurrency: 8, Size: 100,
		Replication: "001", Collection: "pics", AssignBatch: k, Out: &out, Progress: &prog,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if got := c.puts.Load(); got != n {
		t.Errorf("PUTs = %d, want %d", got, n)
	}
	if got := len(c.needles); got != n {
		t.Errorf("distinct needles stored = %d, want %d", got, n)
	}
	if got := c.gets.Load(); got != n {
		t.Errorf("GETs = %d, want %d", got, n)
	}
	// ceil(1000/64) = 16 batches; allow a little slack, but far fewer than N.
	if got := c.assigns.Load(); got < (n+k-1)/k || got > (n+k-1)/k+8 {
		t.Errorf("assign calls = %d, want about %d", got, (n+k-1)/k)
	}
	if got := c.replication.Load(); got != "001" {
		t.Errorf("replication sent = %v, want 001", got)
	}
	if got := c.collection.Load(); got != "pics" {
		t.Errorf("collection sent = %v, want pics", got)
	}
	if len(res) != 2 || res[0].Phase != "write" || res[1].Phase != "read" {
		t.Fatalf("results = %+v", res)
	}
	for _, r := range res {
		if r.Requests != n || r.Errors != 0 || r.Bytes != n*100 {
			t.Errorf("%s: requests %d errors %d bytes %d", r.Phase, r.Requests, r.Errors, r.Bytes)
		}
		if r.P50 <= 0 || r.P50 > r.P90 || r.P90 > r.P99 || r.P99 > r.Max {
			t.Errorf("%s: percentiles out of order: %v %v %v %v", r.Phase, r.P50, r.P90, r.P99, r.Max)
		}
		if r.ReqPerSec <= 0 || r.MBPerSec <= 0 {
			t.Errorf("%s: rates %v %v", r.Phase, r.ReqPerSec, r.MBPerSec)
		}
	}
	s := out.String()
	for _, want := range []string{"Writing Benchmark", "Randomly Reading Benchmark", "RESULT ", "write_mb_per_sec=", "OK: wrote 1000 needles"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestSmallNSpreadsOverWorkers(t *testing.T) {
	c := newFakeCluster(t)
	var out bytes.Buffer
	_, err := Run(context.Background(), Config{Master: c.masterAddr(), N: 100, Concurrency: 4, Size: 10, Out: &out})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	// 100 needles over 4 workers: batches of 25, so 4 assigns, not 2.
	if got := c.assigns.Load(); got != 4 {
		t.Errorf("assign calls = %d, want 4", got)
	}
	if got := c.puts.Load(); got != 100 {
		t.Errorf("PUTs = %d, want 100", got)
	}
}

func TestCorruptReadIsReported(t *testing.T) {
	c := newFakeCluster(t)
	c.flipOneRead.Store(true)
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{Master: c.masterAddr(), N: 200, Concurrency: 4, Size: 64, Out: &out})
	if err == nil {
		t.Fatalf("Run succeeded despite a corrupt read:\n%s", out.String())
	}
	if !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("error %q does not say corrupt", err)
	}
	if len(res) != 2 || res[1].Corrupt != 1 || res[1].Errors != 1 {
		t.Fatalf("read result = %+v, want exactly one corrupt read", res)
	}
	s := out.String()
	for _, want := range []string{"CORRUPT READ: needle 3,", "Corrupt reads:          1", "corrupt_reads=1", "FAILED:"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestWriteErrorsAreCountedAndShown(t *testing.T) {
	c := newFakeCluster(t)
	c.failPutEach = 10
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{Master: c.masterAddr(), N: 100, Concurrency: 2, Size: 8, Out: &out})
	if err == nil {
		t.Fatal("Run succeeded despite failed writes")
	}
	if res[0].Errors != 10 || res[0].Requests != 100 {
		t.Errorf("write result = %+v, want 10 errors of 100", res[0])
	}
	if res[1].Requests != 90 || res[1].Errors != 0 {
		t.Errorf("read result = %+v, want 90 clean reads", res[1])
	}
	s := out.String()
	if !strings.Contains(s, "10x write to ") || !strings.Contains(s, "disk is full") {
		t.Errorf("report does not show the distinct error once with its count:\n%s", s)
	}
}

func TestMasterErrorIsShown(t *testing.T) {
	master := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no writable volumes for replication 222"})
	}))
	defer master.Close()
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{Master: strings.TrimPrefix(master.URL, "http://"), N: 10, Concurrency: 2, Size: 8, Out: &out})
	if err == nil {
		t.Fatal("Run succeeded with a failing master")
	}
	if res[0].Errors != 10 {
		t.Errorf("write errors = %d, want 10", res[0].Errors)
	}
	if !strings.Contains(out.String(), "no writable volumes for replication 222") {
		t.Errorf("report does not carry the master's error:\n%s", out.String())
	}
}

func TestCancelStopsAndReports(t *testing.T) {
	c := newFakeCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.onPut = func(n int64) {
		if n == 50 {
			cancel()
		}
	}
	var out bytes.Buffer
	done := make(chan struct{})
	var res []Result
	var err error
	go func() {
		defer close(done)
		res, err = Run(ctx, Config{Master: c.masterAddr(), N: 100000, Concurrency: 4, Size: 16, Out: &out})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if len(res) != 1 || res[0].Requests < 50-4 || res[0].Requests >= 100000 || res[0].Errors != 0 {
		t.Errorf("results = %+v, want a partial write phase without errors", res)
	}
	s := out.String()
	if !strings.Contains(s, "Writing Benchmark") || !strings.Contains(s, "stopped after") {
		t.Errorf("report after cancel:\n%s", s)
	}
}

func TestSkipRead(t *testing.T) {
	c := newFakeCluster(t)
	res, err := Run(context.Background(), Config{Master: c.masterAddr(), N: 20, Concurrency: 3, Size: 8, SkipRead: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || c.gets.Load() != 0 {
		t.Errorf("results %+v, gets %d", res, c.gets.Load())
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose: computeStats sorts
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	st := computeStats(lat)
	want := map[string][2]time.Duration{
		"p50":  {st.p50, 50 * time.Millisecond},
		"p90":  {st.p90, 90 * time.Millisecond},
		"p99":  {st.p99, 99 * time.Millisecond},
		"max":  {st.max, 100 * time.Millisecond},
		"min":  {st.min, 1 * time.Millisecond},
		"mean": {st.mean, 50500 * time.Microsecond},
	}
	for name, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %v, want %v", name, gw[0], gw[1])
		}
	}

	// Ten samples, one slow outlier: p50 and p90 ignore it, p99 sees it.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 1000}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {90, 9}, {99, 1000}, {100, 1000}, {1, 1}, {0, 1}} {
		if got := Percentile(ten, tc.p); got != tc.want {
			t.Errorf("Percentile(ten, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("Percentile(single) = %v", got)
	}
}

func TestMainFlags(t *testing.T) {
	c := newFakeCluster(t)
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--master", c.masterAddr(), "-n", "50", "-c", "4", "--size", "32", "--replication", "001", "--collection", "x"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if c.puts.Load() != 50 || c.replication.Load() != "001" || c.collection.Load() != "x" {
		t.Errorf("puts %d replication %v collection %v", c.puts.Load(), c.replication.Load(), c.collection.Load())
	}
	if !strings.Contains(stdout.String(), "RESULT n=50 size=32 concurrency=4 replication=001") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	if code := Main([]string{"--bogus"}, &stdout, &stderr); code != 2 {
		t.Errorf("bad flag exit %d, want 2", code)
	}
	if code := Main([]string{"extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("positional arg exit %d, want 2", code)
	}
	if code := Main([]string{"--master", c.masterAddr(), "-n", "0"}, &stdout, &stderr); code != 1 {
		t.Errorf("-n 0 exit %d, want 1", code)
	}
}

func TestProgressLines(t *testing.T) {
	old := progressInterval
	progressInterval = 5 * time.Millisecond
	defer func() { progressInterval = old }()
	c := newFakeCluster(t)
	c.onPut = func(int64) { time.Sleep(200 * time.Microsecond) }
	var prog testutil.SyncBuffer
	if _, err := Run(context.Background(), Config{Master: c.masterAddr(), N: 300, Concurrency: 1, Size: 8, Progress: &prog}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "write: ") || !strings.Contains(prog.String(), "/300 needles") {
		t.Errorf("progress output:\n%s", prog.String())
	}
}
