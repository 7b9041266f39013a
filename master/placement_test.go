package master

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func cand(url, dc, rack string, vols int) candidate {
	return candidate{URL: url, DC: dc, Rack: rack, Volumes: vols, MaxVolumes: 4}
}

func TestParsePlacement(t *testing.T) {
	p, err := parsePlacement("012")
	if err != nil || p != (placement{0, 1, 2}) || p.Copies() != 4 || p.String() != "012" {
		t.Fatalf("012: %+v %v", p, err)
	}
	for _, bad := range []string{"", "00", "0000", "00a", "-01"} {
		if _, err := parsePlacement(bad); !errors.Is(err, ErrBadReplication) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestPickServers(t *testing.T) {
	byURL := map[string]candidate{}
	layout := []candidate{
		cand("a1", "dc1", "r1", 0), cand("a2", "dc1", "r1", 3), cand("a3", "dc1", "r1", 1),
		cand("b1", "dc1", "r2", 0),
		cand("c1", "dc2", "r1", 2),
		{URL: "full", DC: "dc3", Rack: "r1", Volumes: 4, MaxVolumes: 4},
	}
	for _, c := range layout {
		byURL[c.URL] = c
	}
	tests := []struct {
		repl  string
		check func(t *testing.T, got []string)
		err   string
	}{
		{"000", func(t *testing.T, got []string) {
			if byURL[got[0]].Volumes != 0 {
				t.Errorf("000 picked loaded server %v", got)
			}
		}, ""},
		{"001", func(t *testing.T, got []string) {
			if byURL[got[0]].Rack != byURL[got[1]].Rack || byURL[got[0]].DC != byURL[got[1]].DC {
				t.Errorf("001 across racks: %v", got)
			}
			if !slices.Contains(got, "a1") || !slices.Contains(got, "a3") {
				t.Errorf("001 should prefer the least loaded a1,a3: %v", got)
			}
		}, ""},
		{"010", func(t *testing.T, got []string) {
			a, b := byURL[got[0]], byURL[got[1]]
			if a.DC != b.DC || a.Rack == b.Rack {
				t.Errorf("010 not on two racks of one dc: %v", got)
			}
		}, ""},
		{"100", func(t *testing.T, got []string) {
			if byURL[got[0]].DC == byURL[got[1]].DC {
				t.Errorf("100 in one dc: %v", got)
			}
			if slices.Contains(got, "full") {
				t.Errorf("100 picked a full server: %v", got)
			}
		}, ""},
		{"110", func(t *testing.T, got []string) {
			if len(got) != 3 {
				t.Fatalf("110: %v", got)
			}
			main, other, remote := byURL[got[0]], byURL[got[1]], byURL[got[2]]
			if main.DC != other.DC || main.Rack == other.Rack || remote.DC == main.DC {
				t.Errorf("110 layout wrong: %v", got)
			}
		}, ""},
		{"003", nil, "needs 4 servers"},
		{"200", nil, "needs 3 servers"},
		{"020", nil, "needs 3 servers"},
	}
	for _, tc := range tests {
		for seed := range uint64(20) {
			got, err := pickServers(slices.Clone(layout), mustPlacement(t, tc.repl), rand.New(rand.NewPCG(seed, 1)))
			if tc.err != "" {
				if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "5 of 6 alive servers") {
					t.Fatalf("%s: %v", tc.repl, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.repl, err)
			}
			p := mustPlacement(t, tc.repl)
			if len(got) != p.Copies() {
				t.Fatalf("%s: %d servers, want %d", tc.repl, len(got), p.Copies())
			}
			if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
				t.Fatalf("%s: duplicate server in %v", tc.repl, got)
			}
			tc.check(t, got)
		}
	}
}

func TestPickServersEmpty(t *testing.T) {
	_, err := pickServers(nil, placement{}, rand.New(rand.NewPCG(1, 1)))
	if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "0 of 0 alive") {
		t.Fatal(err)
	}
}

func mustPlacement(t *testing.T, s string) placement {
	t.Helper()
	p, err := parsePlacement(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
