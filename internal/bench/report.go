package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

type stats struct {
	min, max, mean, std, p50, p90, p99 time.Duration
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be in ascending order: the smallest value such that at
// least p percent of the values are less than or equal to it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

func computeStats(lat []time.Duration) stats {
	if len(lat) == 0 {
		return stats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	mean := sum / float64(len(s))
	var sq float64
	for _, d := range s {
		x := float64(d) - mean
		sq += x * x
	}
	return stats{
		min:  s[0],
		max:  s[len(s)-1],
		mean: time.Duration(mean),
		std:  time.Duration(math.Sqrt(sq / float64(len(s)))),
		p50:  Percentile(s, 50),
		p90:  Percentile(s, 90),
		p99:  Percentile(s, 99),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (b *bench) header() {
	c := b.cfg
	repl := c.Replication
	if repl == "" {
		repl = "master default"
	}
	coll := c.Collection
	if coll == "" {
		coll = "default"
	}
	b.printf("cairn benchmark: %d needles of %d bytes, concurrency %d, replication %s, collection %s, master %s\n",
		c.N, c.Size, c.Concurrency, repl, coll, c.Master)
	b.printf("file ids assigned %d per master call\n\n", c.AssignBatch)
}

func (b *bench) phaseReport(r Result, el *errorLog) {
	title := "Writing Benchmark"
	if r.Phase == "read" {
		title = "Randomly Reading Benchmark"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "------------ %s ----------\n", title)
	fmt.Fprintf(&sb, "Concurrency Level:      %d\n", b.cfg.Concurrency)
	fmt.Fprintf(&sb, "Time taken for tests:   %.3f seconds\n", r.Elapsed.Seconds())
	fmt.Fprintf(&sb, "Completed requests:     %d\n", r.Requests-r.Errors)
	fmt.Fprintf(&sb, "Failed requests:        %d\n", r.Errors)
	if r.Phase == "read" {
		fmt.Fprintf(&sb, "Corrupt reads:          %d\n", r.Corrupt)
	}
	fmt.Fprintf(&sb, "Total transferred:      %d bytes\n", r.Bytes)
	fmt.Fprintf(&sb, "Requests per second:    %.2f [#/sec]\n", r.ReqPerSec)
	fmt.Fprintf(&sb, "Transfer rate:          %.2f [MB/sec] (MB = 10^6 bytes)\n", r.MBPerSec)
	if r.Phase == "write" {
		calls := b.assignCalls.Load()
		st := computeStats(b.assignLat.d)
		fmt.Fprintf(&sb, "Assign calls:           %d (%d failed), p50 %.2f ms, max %.2f ms\n",
			calls, b.assignErrors.Load(), ms(st.p50), ms(st.max))
	}
	fmt.Fprintf(&sb, "\nConnection Times (ms), successful requests\n")
	fmt.Fprintf(&sb, "              min      avg        max      std\n")
	fmt.Fprintf(&sb, "Total:     %7.2f  %7.2f  %9.2f  %7.2f\n", ms(r.Min), ms(r.Mean), ms(r.Max), ms(r.std))
	fmt.Fprintf(&sb, "\nPercentage of the requests served within a certain time (ms)\n")
	fmt.Fprintf(&sb, "   50%%  %9.2f ms\n", ms(r.P50))
	fmt.Fprintf(&sb, "   90%%  %9.2f ms\n", ms(r.P90))
	fmt.Fprintf(&sb, "   99%%  %9.2f ms\n", ms(r.P99))
	fmt.Fprintf(&sb, "  100%%  %9.2f ms\n", ms(r.Max))
	if len(el.order) > 0 {
		fmt.Fprintf(&sb, "\nFirst distinct errors (%s):\n", r.Phase)
		for _, m := range el.order {
			e := el.seen[m]
			ex := ""
			if e.example != "" {
				ex = fmt.Sprintf(" (first on needle %s)", e.example)
			}
			fmt.Fprintf(&sb, "  %6dx %s%s\n", e.count, m, ex)
		}
		if el.other > 0 {
			fmt.Fprintf(&sb, "  %6dx other errors not shown\n", el.other)
		}
	}
	sb.WriteString("\n")
	b.printf("%s", sb.String())
}

func (b *bench) summary(results []Result) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-6s %9s %7s %8s %10s %9s %9s %9s %9s %9s\n",
		"phase", "requests", "errors", "secs", "req/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
	for _, r := range results {
		fmt.Fprintf(&sb, "%-6s %9d %7d %8.2f %10.1f %9.2f %9.2f %9.2f %9.2f %9.2f\n",
			r.Phase, r.Requests, r.Errors, r.Elapsed.Seconds(), r.ReqPerSec, r.MBPerSec,
			ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
	}
	// One machine-readable line: scripts parse it.
	sb.WriteString("RESULT")
	fmt.Fprintf(&sb, " n=%d size=%d concurrency=%d replication=%s", b.cfg.N, b.cfg.Size, b.cfg.Concurrency, orDash(b.cfg.Replication))
	totalErr, corrupt := 0, 0
	for _, r := range results {
		fmt.Fprintf(&sb, " %s_reqs=%d %s_errors=%d %s_req_per_sec=%.1f %s_mb_per_sec=%.2f %s_p50_ms=%.3f %s_p99_ms=%.3f",
			r.Phase, r.Requests, r.Phase, r.Errors, r.Phase, r.ReqPerSec, r.Phase, r.MBPerSec,
			r.Phase, ms(r.P50), r.Phase, ms(r.P99))
		totalErr += r.Errors
		corrupt += r.Corrupt
	}
	fmt.Fprintf(&sb, " errors=%d corrupt_reads=%d\n", totalErr, corrupt)
	b.printf("%s", sb.String())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// verdict prints the final line and turns failures into an error.
func (b *bench) verdict(ctx context.Context, results []Result) error {
	var errs, corrupt, done int
	for _, r := range results {
		errs += r.Errors
		corrupt += r.Corrupt
	}
	if len(results) > 0 {
		done = results[0].Requests - results[0].Errors
	}
	var err error
	switch {
	case corrupt > 0 && errs > corrupt:
		err = fmt.Errorf("benchmark: %d corrupt reads (data read back differs from what was written) and %d other failed requests", corrupt, errs-corrupt)
	case corrupt > 0:
		err = fmt.Errorf("benchmark: %d corrupt reads: data read back differs from what was written", corrupt)
	case errs > 0:
		err = fmt.Errorf("benchmark: %d requests failed (see the errors above)", errs)
	case ctx.Err() != nil:
		err = fmt.Errorf("benchmark: stopped after %d of %d writes: %w", done, b.cfg.N, ctx.Err())
	}
	if err != nil {
		if ctx.Err() != nil && !strings.Contains(err.Error(), "stopped") {
			err = fmt.Errorf("%w (stopped early: %w)", err, ctx.Err())
		}
		b.printf("FAILED: %v\n", err)
		return err
	}
	read := "read phase skipped"
	if len(results) > 1 {
		read = fmt.Sprintf("read back and verified %d", results[1].Requests-results[1].Errors)
	}
	b.printf("OK: wrote %d needles of %d bytes, %s, 0 errors, 0 corrupt reads\n", done, b.cfg.Size, read)
	return nil
}
