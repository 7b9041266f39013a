// Package byterange has byte-range arithmetic shared by the filer (which slices
// of a file are visible) and the mount (which bytes are buffered).
package byterange

import "slices"

// Interval is a half-open byte range [Lo, Hi).
type Interval struct{ Lo, Hi uint64 }

// Coverage is a sorted list of disjoint, non-adjacent intervals.
type Coverage []Interval

// Uncovered returns the parts of [lo, hi) not in c, in order.
func (c Coverage) Uncovered(lo, hi uint64) []Interval {
	var out []Interval
	for _, iv := range c {
		if iv.Hi <= lo {
			continue
		}
		if iv.Lo >= hi {
			break
		}
		if iv.Lo > lo {
			out = append(out, Interval{lo, iv.Lo})
		}
		lo = max(lo, iv.Hi)
		if lo >= hi {
			return out
		}
	}
	if lo < hi {
		out = append(out, Interval{lo, hi})
	}
	return out
}

// Add merges [lo, hi) into c and returns the result.
func (c Coverage) Add(lo, hi uint64) Coverage {
	i := 0
	for i < len(c) && c[i].Hi < lo {
		i++
	}
	j := i
	for j < len(c) && c[j].Lo <= hi {
		lo = min(lo, c[j].Lo)
		hi = max(hi, c[j].Hi)
		j++
	}
	return slices.Replace(c, i, j, Interval{lo, hi})
}
