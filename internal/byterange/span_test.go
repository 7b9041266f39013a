package byterange

import (
	"math/rand/v2"
	"testing"
)

// TestCoverageAgainstBitmap checks Add and Uncovered against a byte map.
func TestCoverageAgainstBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		var c Coverage
		var bits [200]bool
		for range 1 + rng.IntN(8) {
			lo := uint64(rng.IntN(180))
			hi := lo + uint64(rng.IntN(20))
			c = c.Add(lo, hi)
			for i := lo; i < hi; i++ {
				bits[i] = true
			}
		}
		for i := 1; i < len(c); i++ {
			if c[i-1].Hi >= c[i].Lo {
				t.Fatalf("round %d: intervals overlap or touch: %v", round, c)
			}
		}
		lo, hi := uint64(rng.IntN(100)), uint64(100+rng.IntN(100))
		var got [200]bool
		for _, iv := range c.Uncovered(lo, hi) {
			for i := iv.Lo; i < iv.Hi; i++ {
				got[i] = true
			}
		}
		all := true
		for i := lo; i < hi; i++ {
			if got[i] == bits[i] {
				t.Fatalf("round %d: byte %d uncovered=%v covered=%v (%v)", round, i, got[i], bits[i], c)
			}
			all = all && bits[i]
		}
		if c.Covers(lo, hi) != all {
			t.Fatalf("round %d: Covers(%d, %d) = %v, bytes say %v (%v)", round, lo, hi, !all, all, c)
		}
	}
}
