package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/security"
)

// MetaConfig says how to run the metadata benchmark against a filer group.
type MetaConfig struct {
	Filers      []string  // filer HTTP addresses host:port (gRPC at port+10000)
	N           int       // files per phase; 0 means DefaultMetaN
	Concurrency int       // parallel workers; 0 means 16
	Out         io.Writer // the report; nil discards it
	Progress    io.Writer // optional: a progress line every ~2s
	// Dir is the absolute path under which the benchmark works. It must not
	// exist or be an empty directory; missing parents are created. Empty
	// means "/bench-<random>". What the benchmark creates under it is
	// removed at the end, and Dir itself too if the benchmark created it.
	Dir string
	// ListEntries is the size of the directory the readdir phase lists;
	// 0 means DefaultMetaListEntries, negative skips the shared-directory
	// phases (create_shared, readdir, unlink_shared).
	ListEntries int
	// Listings is how many full listings the readdir phase makes; 0 means
	// max(Concurrency, 5).
	Listings int
	// PageSize is the readdir page size; 0 means DefaultMetaPageSize.
	PageSize int
	Security *security.Config // nil: plaintext
}

// MetaResult is what one phase of the metadata benchmark measured.
// Latencies are per filer call (for readdir: per page).
type MetaResult struct {
	Phase     string
	Ops       int // calls attempted
	Errors    int // failed calls
	Elapsed   time.Duration
	OpsPerSec float64 // successful calls per second
	P50       time.Duration
	P99       time.Duration
	Max       time.Duration
	Mean      time.Duration

	// readdir only.
	Listings      int           // full listings completed
	Entries       int           // directory entries returned
	EntriesPerSec float64       // entries per second over the phase
	ListTime      time.Duration // median time of one full listing
}

// Defaults of MetaConfig.
const (
	DefaultMetaN           = 10000
	DefaultMetaListEntries = 10000
	DefaultMetaPageSize    = 1000
)

// Phase names, in the order they run.
const (
	PhaseCreate       = "create"
	PhaseStat         = "stat"
	PhaseRename       = "rename"
	PhaseUnlink       = "unlink"
	PhaseCreateShared = "create_shared"
	PhaseReaddir      = "readdir"
	PhaseUnlinkShared = "unlink_shared"
)

// metaFile is one file of the benchmark and what happened to it.
type metaFile struct {
	name    string // current name
	ino     uint64
	exists  bool // created and not yet unlinked
	renamed bool
}

// metaWorker is one worker's directory and files.
type metaWorker struct {
	dir   uint64
	name  string
	files []metaFile
}

type metaBench struct {
	cfg     MetaConfig
	c       *filer.Client
	out     io.Writer
	outMu   sync.Mutex
	errs    map[string]*errorLog
	root    uint64 // ino of cfg.Dir
	made    bool   // cfg.Dir was created by this run
	workers []*metaWorker
	shared  metaWorker
}

func (c *MetaConfig) fill() error {
	if len(c.Filers) == 0 {
		return errors.New("benchmark meta: no filer address (want host:port)")
	}
	if c.N == 0 {
		c.N = DefaultMetaN
	}
	if c.N < 0 {
		return fmt.Errorf("benchmark meta: number of files must be positive, got %d", c.N)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	c.Concurrency = min(c.Concurrency, c.N)
	if c.ListEntries == 0 {
		c.ListEntries = DefaultMetaListEntries
	}
	if c.Listings <= 0 {
		c.Listings = max(c.Concurrency, 5)
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultMetaPageSize
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Dir == "" {
		b := make([]byte, 6)
		_, _ = crand.Read(b)
		c.Dir = "/bench-" + hex.EncodeToString(b)
	}
	if !strings.HasPrefix(c.Dir, "/") {
		return fmt.Errorf("benchmark meta: directory %q is not an absolute path", c.Dir)
	}
	c.Dir = path.Clean(c.Dir)
	if c.Dir == "/" {
		return errors.New("benchmark meta: refusing to work in the root directory; name a fresh directory")
	}
	return nil
}

// RunMeta measures metadata operations through the filer's gRPC API: it
// creates N files spread over Concurrency workers, each in a directory of
// its own, looks every one up, renames every one within its directory and
// unlinks every one; then it fills one shared directory with ListEntries
// files from all workers at once, lists it page by page Listings times and
// unlinks its files. It prints the report to cfg.Out and returns one
// MetaResult per phase that ran. It returns an error when a call failed or
// ctx was cancelled; the results and the report cover what was done.
func RunMeta(ctx context.Context, cfg MetaConfig) ([]MetaResult, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	c := filer.NewClient(cfg.Filers, cfg.Security)
	defer c.Close()
	b := &metaBench{cfg: cfg, c: c, out: cfg.Out, errs: map[string]*errorLog{}}
	b.printf("cairn benchmark meta: %d files, concurrency %d, readdir of %d entries in pages of %d, filers %s, directory %s\n\n",
		cfg.N, cfg.Concurrency, max(cfg.ListEntries, 0), cfg.PageSize, strings.Join(cfg.Filers, ","), cfg.Dir)

	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	var results []MetaResult
	run := func(r MetaResult) {
		results = append(results, r)
		b.phaseLine(r)
	}
	b.printf("%-14s %8s %7s %8s %10s %9s %9s %9s\n", "phase", "ops", "errors", "secs", "ops/s", "p50 ms", "p99 ms", "max ms")
	run(b.perFile(ctx, PhaseCreate, b.workers, b.create))
	if ctx.Err() == nil {
		run(b.perFile(ctx, PhaseStat, b.workers, b.stat))
	}
	if ctx.Err() == nil {
		run(b.perFile(ctx, PhaseRename, b.workers, b.rename))
	}
	// Unlink runs even after a cancellation so that the directory is left
	// clean; its own context is not the cancelled one.
	cleanCtx, cancelClean := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancelClean()
	run(b.perFile(cleanCtx, PhaseUnlink, b.workers, b.unlink))
	if cfg.ListEntries > 0 && ctx.Err() == nil {
		shared := b.sharedWorkers()
		run(b.perFile(ctx, PhaseCreateShared, shared, b.create))
		if ctx.Err() == nil {
			run(b.readdir(ctx))
		}
		run(b.perFile(cleanCtx, PhaseUnlinkShared, shared, b.unlink))
	}
	cleanErr := b.teardown(cleanCtx)
	b.printf("\n")
	b.errorReport(results)
	b.resultLine(results)
	return results, b.verdict(ctx, results, cleanErr)
}

func (b *metaBench) printf(format string, args ...any) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	fmt.Fprintf(b.out, format, args...)
}

func (b *metaBench) errLog(phase string) *errorLog {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	el := b.errs[phase]
	if el == nil {
		el = &errorLog{}
		b.errs[phase] = el
	}
	return el
}

// setup creates cfg.Dir (and its missing parents) and one directory per
// worker in it, and lays out the file names.
func (b *metaBench) setup(ctx context.Context) error {
	cfg := b.cfg
	parent := filer.RootIno
	parts := strings.Split(strings.TrimPrefix(cfg.Dir, "/"), "/")
	for i, name := range parts {
		last := i == len(parts)-1
		res, err := b.c.Apply(ctx, &filer.Mkdir{Parent: parent, Name: name, Mode: 0o755})
		if err == nil {
			parent = res.Inode.Ino
			b.made = last
			continue
		}
		if !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("benchmark meta: create directory %s: %w", "/"+strings.Join(parts[:i+1], "/"), err)
		}
		in, err := b.c.Lookup(ctx, parent, name)
		if err != nil {
			return fmt.Errorf("benchmark meta: look up %s: %w", "/"+strings.Join(parts[:i+1], "/"), err)
		}
		if !in.IsDir() {
			return fmt.Errorf("benchmark meta: %s exists and is not a directory", "/"+strings.Join(parts[:i+1], "/"))
		}
		parent = in.Ino
		if last {
			ents, err := b.c.ReadDir(ctx, parent, "", 1)
			if err != nil {
				return fmt.Errorf("benchmark meta: list %s: %w", cfg.Dir, err)
			}
			if len(ents) > 0 {
				return fmt.Errorf("benchmark meta: %s is not empty; name a fresh directory", cfg.Dir)
			}
		}
	}
	b.root = parent

	b.workers = make([]*metaWorker, cfg.Concurrency)
	for w := range b.workers {
		name := fmt.Sprintf("w%03d", w)
		res, err := b.c.Apply(ctx, &filer.Mkdir{Parent: b.root, Name: name, Mode: 0o755})
		if err != nil {
			b.teardown(context.WithoutCancel(ctx))
			return fmt.Errorf("benchmark meta: create directory %s/%s: %w", cfg.Dir, name, err)
		}
		lo, hi := w*cfg.N/cfg.Concurrency, (w+1)*cfg.N/cfg.Concurrency
		mw := &metaWorker{dir: res.Inode.Ino, name: name, files: make([]metaFile, 0, hi-lo)}
		for i := lo; i < hi; i++ {
			mw.files = append(mw.files, metaFile{name: fmt.Sprintf("f%08d", i)})
		}
		b.workers[w] = mw
	}
	if cfg.ListEntries > 0 {
		res, err := b.c.Apply(ctx, &filer.Mkdir{Parent: b.root, Name: "shared", Mode: 0o755})
		if err != nil {
			b.teardown(context.WithoutCancel(ctx))
			return fmt.Errorf("benchmark meta: create directory %s/shared: %w", cfg.Dir, err)
		}
		b.shared = metaWorker{dir: res.Inode.Ino, name: "shared", files: make([]metaFile, cfg.ListEntries)}
		for i := range b.shared.files {
			b.shared.files[i].name = fmt.Sprintf("s%08d", i)
		}
	}
	return nil
}

// sharedWorkers splits the files of the shared directory over the workers:
// all of them work in the one directory.
func (b *metaBench) sharedWorkers() []*metaWorker {
	n := b.cfg.Concurrency
	out := make([]*metaWorker, n)
	files := b.shared.files
	for w := range n {
		lo, hi := w*len(files)/n, (w+1)*len(files)/n
		out[w] = &metaWorker{dir: b.shared.dir, name: b.shared.name, files: files[lo:hi]}
	}
	return out
}

// teardown removes the directories setup made.
func (b *metaBench) teardown(ctx context.Context) error {
	var errs []error
	rmdir := func(parent uint64, name string) {
		_, err := b.c.Apply(ctx, &filer.Rmdir{Parent: parent, Name: name})
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
		}
	}
	for _, w := range b.workers {
		if w != nil {
			rmdir(b.root, w.name)
		}
	}
	if b.shared.dir != 0 {
		rmdir(b.root, b.shared.name)
	}
	if b.made && b.root != 0 {
		parent := filer.RootIno
		dir, name := splitPath(b.cfg.Dir)
		if dir != "/" {
			in, err := b.c.Resolve(ctx, dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("resolve %s: %w", dir, err))
				return errors.Join(errs...)
			}
			parent = in.Ino
		}
		rmdir(parent, name)
	}
	return errors.Join(errs...)
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndex(p, "/")
	dir = p[:i]
	if dir == "" {
		dir = "/"
	}
	return dir, p[i+1:]
}

// fileOp does one operation on f in directory dir. It returns skip when
// the file is not in a state for the operation (e.g. its create failed),
// so nothing was attempted.
type fileOp func(ctx context.Context, dir uint64, f *metaFile) (skip bool, err error)

func (b *metaBench) create(ctx context.Context, dir uint64, f *metaFile) (bool, error) {
	res, err := b.c.Apply(ctx, &filer.Create{Parent: dir, Name: f.name, Mode: 0o644, Excl: true})
	if err != nil {
		return false, err
	}
	f.ino, f.exists = res.Inode.Ino, true
	return false, nil
}

func (b *metaBench) stat(ctx context.Context, dir uint64, f *metaFile) (bool, error) {
	if !f.exists {
		return true, nil
	}
	in, err := b.c.Lookup(ctx, dir, f.name)
	if err != nil {
		return false, err
	}
	if in.Ino != f.ino || !in.IsRegular() {
		return false, fmt.Errorf("lookup returned inode %d mode %o, created inode %d as a regular file", in.Ino, in.Mode, f.ino)
	}
	return false, nil
}

func (b *metaBench) rename(ctx context.Context, dir uint64, f *metaFile) (bool, error) {
	if !f.exists {
		return true, nil
	}
	to := "r" + f.name[1:]
	_, err := b.c.Apply(ctx, &filer.Rename{OldParent: dir, OldName: f.name, NewParent: dir, NewName: to, Flags: filer.RenameNoReplace})
	if err != nil {
		return false, err
	}
	f.name, f.renamed = to, true
	return false, nil
}

func (b *metaBench) unlink(ctx context.Context, dir uint64, f *metaFile) (bool, error) {
	if !f.exists {
		return true, nil
	}
	_, err := b.c.Apply(ctx, &filer.Unlink{Parent: dir, Name: f.name})
	if err != nil {
		return false, err
	}
	f.exists = false
	return false, nil
}

// perFile runs op on every file of every worker, one goroutine per worker.
func (b *metaBench) perFile(ctx context.Context, phase string, workers []*metaWorker, op fileOp) MetaResult {
	var (
		done, errs atomic.Int64
		lat        latencies
		wg         sync.WaitGroup
	)
	el := b.errLog(phase)
	total := 0
	for _, w := range workers {
		total += len(w.files)
	}
	start := time.Now()
	stop := b.startProgress(phase, "ops", &done, total, start)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			my := make([]time.Duration, 0, len(w.files))
			for i := range w.files {
				if ctx.Err() != nil {
					break
				}
				f := &w.files[i]
				t0 := time.Now()
				skip, err := op(ctx, w.dir, f)
				d := time.Since(t0)
				if skip {
					continue
				}
				if err != nil && ctx.Err() != nil {
					break // cancelled mid-call: not a failure
				}
				done.Add(1)
				if err != nil {
					errs.Add(1)
					el.add(err.Error(), w.name+"/"+f.name)
					continue
				}
				my = append(my, d)
			}
			lat.add(my)
		}()
	}
	wg.Wait()
	stop()
	return makeMetaResult(phase, int(done.Load()), int(errs.Load()), time.Since(start), lat.d)
}

// readdir lists the shared directory cfg.Listings times, page by page,
// spread over the workers.
func (b *metaBench) readdir(ctx context.Context) MetaResult {
	cfg := b.cfg
	want := 0
	for _, f := range b.shared.files {
		if f.exists {
			want++
		}
	}
	var (
		next, pages, errs, entries, listings atomic.Int64
		lat, listLat                         latencies
		wg                                   sync.WaitGroup
	)
	el := b.errLog(PhaseReaddir)
	workers := max(min(cfg.Concurrency, cfg.Listings), 1)
	start := time.Now()
	stop := b.startProgress(PhaseReaddir, "listings", &listings, cfg.Listings, start)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var my, myList []time.Duration
		listing:
			for ctx.Err() == nil && next.Add(1) <= int64(cfg.Listings) {
				l0 := time.Now()
				after, got := "", 0
				for {
					t0 := time.Now()
					ents, err := b.c.ReadDir(ctx, b.shared.dir, after, cfg.PageSize)
					d := time.Since(t0)
					if err != nil && ctx.Err() != nil {
						break listing
					}
					pages.Add(1)
					if err != nil {
						errs.Add(1)
						el.add(err.Error(), fmt.Sprintf("page after %q", after))
						continue listing
					}
					my = append(my, d)
					got += len(ents)
					entries.Add(int64(len(ents)))
					if len(ents) < cfg.PageSize {
						break
					}
					after = ents[len(ents)-1].Name
				}
				myList = append(myList, time.Since(l0))
				listings.Add(1)
				if got != want {
					errs.Add(1)
					el.add(fmt.Sprintf("a full listing returned %d entries, want %d", got, want), "")
				}
			}
			lat.add(my)
			listLat.add(myList)
		}()
	}
	wg.Wait()
	stop()
	elapsed := time.Since(start)
	r := makeMetaResult(PhaseReaddir, int(pages.Load()), int(errs.Load()), elapsed, lat.d)
	r.Listings = int(listings.Load())
	r.Entries = int(entries.Load())
	if s := elapsed.Seconds(); s > 0 {
		r.EntriesPerSec = float64(r.Entries) / s
	}
	if len(listLat.d) > 0 {
		s := slices.Clone(listLat.d)
		slices.Sort(s)
		r.ListTime = Percentile(s, 50)
	}
	return r
}

func makeMetaResult(phase string, ops, errs int, elapsed time.Duration, lat []time.Duration) MetaResult {
	r := MetaResult{Phase: phase, Ops: ops, Errors: errs, Elapsed: elapsed}
	if s := elapsed.Seconds(); s > 0 {
		r.OpsPerSec = float64(ops-errs) / s
	}
	st := computeStats(lat)
	r.P50, r.P99, r.Max, r.Mean = st.p50, st.p99, st.max, st.mean
	return r
}

func (b *metaBench) startProgress(phase, unit string, done *atomic.Int64, total int, start time.Time) (stop func()) {
	w := b.cfg.Progress
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	t := time.NewTicker(progressInterval)
	go func() {
		defer close(finished)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				n := done.Load()
				el := time.Since(start).Seconds()
				fmt.Fprintf(w, "%s: %d/%d %s, %.0f/s, %.1fs elapsed\n", phase, n, total, unit, float64(n)/el, el)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

func (b *metaBench) phaseLine(r MetaResult) {
	b.printf("%-14s %8d %7d %8.2f %10.1f %9.2f %9.2f %9.2f\n",
		r.Phase, r.Ops, r.Errors, r.Elapsed.Seconds(), r.OpsPerSec, ms(r.P50), ms(r.P99), ms(r.Max))
	if r.Phase == PhaseReaddir {
		b.printf("%-14s %d full listings of %d entries (pages of %d): %.0f entries/s, %.2f ms per listing (median)\n",
			"", r.Listings, b.cfg.ListEntries, b.cfg.PageSize, r.EntriesPerSec, ms(r.ListTime))
	}
}

func (b *metaBench) errorReport(results []MetaResult) {
	for _, r := range results {
		el := b.errs[r.Phase]
		if el == nil || len(el.order) == 0 {
			continue
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "First distinct errors (%s):\n", r.Phase)
		for _, m := range el.order {
			e := el.seen[m]
			ex := ""
			if e.example != "" {
				ex = fmt.Sprintf(" (first on %s)", e.example)
			}
			fmt.Fprintf(&sb, "  %6dx %s%s\n", e.count, m, ex)
		}
		if el.other > 0 {
			fmt.Fprintf(&sb, "  %6dx other errors not shown\n", el.other)
		}
		b.printf("%s\n", sb.String())
	}
}

// resultLine prints the one machine-readable line scripts parse.
func (b *metaBench) resultLine(results []MetaResult) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "RESULT n=%d concurrency=%d filers=%d list_entries=%d", b.cfg.N, b.cfg.Concurrency, len(b.cfg.Filers), max(b.cfg.ListEntries, 0))
	total := 0
	for _, r := range results {
		p := r.Phase
		fmt.Fprintf(&sb, " %s_ops=%d %s_errors=%d %s_ops_per_sec=%.1f %s_p50_ms=%.3f %s_p99_ms=%.3f",
			p, r.Ops, p, r.Errors, p, r.OpsPerSec, p, ms(r.P50), p, ms(r.P99))
		if p == PhaseReaddir {
			fmt.Fprintf(&sb, " readdir_entries_per_sec=%.0f readdir_listing_ms=%.3f", r.EntriesPerSec, ms(r.ListTime))
		}
		total += r.Errors
	}
	fmt.Fprintf(&sb, " errors=%d\n", total)
	b.printf("%s", sb.String())
}

func (b *metaBench) verdict(ctx context.Context, results []MetaResult, cleanErr error) error {
	errs := 0
	for _, r := range results {
		errs += r.Errors
	}
	var err error
	switch {
	case errs > 0:
		err = fmt.Errorf("benchmark meta: %d filer calls failed (see the errors above)", errs)
	case ctx.Err() != nil:
		err = fmt.Errorf("benchmark meta: stopped early: %w", ctx.Err())
	case cleanErr != nil:
		err = fmt.Errorf("benchmark meta: cleaning up %s: %w", b.cfg.Dir, cleanErr)
	}
	if err != nil {
		b.printf("FAILED: %v\n", err)
		return err
	}
	b.printf("OK: %d files created, looked up, renamed and unlinked, 0 errors\n", b.cfg.N)
	return nil
}

// MetaMain is `cairn benchmark meta`: it parses args (the words after
// "meta"), runs RunMeta with the report on stdout and progress on stderr,
// and returns the process exit code: 0 when every call succeeded, 1 when
// not, 2 for bad flags. SIGINT and SIGTERM stop the run early; the files
// made so far are removed and the report covers what was done.
func MetaMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchmark meta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg MetaConfig
	filers := fs.String("filer", "127.0.0.1:8888", "filer HTTP addresses `host:port[,host:port...]` (gRPC at port+10000)")
	fs.IntVar(&cfg.N, "n", DefaultMetaN, "number of files to create, stat, rename and unlink")
	fs.IntVar(&cfg.Concurrency, "c", 16, "number of concurrent workers, each in a directory of its own")
	fs.StringVar(&cfg.Dir, "dir", "", "fresh directory to work in (default /bench-<random>)")
	fs.IntVar(&cfg.ListEntries, "list-entries", DefaultMetaListEntries, "entries of the directory the readdir phase lists (0 or less: skip it)")
	fs.IntVar(&cfg.Listings, "listings", 0, "full listings in the readdir phase (default max(c, 5))")
	fs.IntVar(&cfg.PageSize, "page", DefaultMetaPageSize, "readdir page size")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn benchmark meta [--filer host:port[,...]] [-n N] [-c C] [--dir /path]\n\n")
		fmt.Fprintf(stderr, "Creates N files through the filer, looks each up, renames and unlinks each, then\nlists a directory of --list-entries entries page by page, and reports ops/s and\nlatency per phase.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn benchmark meta: unexpected argument %q (flags only, see --help)\n", fs.Arg(0))
		return 2
	}
	for _, a := range strings.Split(*filers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Filers = append(cfg.Filers, a)
		}
	}
	if cfg.N <= 0 {
		fmt.Fprintf(stderr, "cairn benchmark meta: -n must be positive, got %d\n", cfg.N)
		return 2
	}
	if cfg.ListEntries <= 0 {
		cfg.ListEntries = -1
	}
	cfg.Out = stdout
	if !*quiet {
		cfg.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := RunMeta(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "cairn benchmark meta: %v\n", err)
		return 1
	}
	return 0
}
