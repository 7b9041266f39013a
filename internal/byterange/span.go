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
	// The intervals are sorted and disjoint: skip those ending at or
	// before lo by binary search (long coverages are the common case of
	// a file with many slices).
	first, _ := slices.BinarySearchFunc(c, lo, func(iv Interval, lo uint64) int { return cmpU64(iv.Hi, lo+1) })
	for _, iv := range c[first:] {
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
	// First interval ending at or after lo (it touches or overlaps).
	i, _ := slices.BinarySearchFunc(c, lo, func(iv Interval, lo uint64) int { return cmpU64(iv.Hi, lo) })
	j := i
	for j < len(c) && c[j].Lo <= hi {
		lo = min(lo, c[j].Lo)
		hi = max(hi, c[j].Hi)
		j++
	}
	return slices.Replace(c, i, j, Interval{lo, hi})
}

// Covers reports whether every byte of [lo, hi) is covered.
func (c Coverage) Covers(lo, hi uint64) bool {
	if lo >= hi {
		return true
	}
	i, _ := slices.BinarySearchFunc(c, lo, func(iv Interval, lo uint64) int { return cmpU64(iv.Hi, lo+1) })
	return i < len(c) && c[i].Lo <= lo && c[i].Hi >= hi
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
