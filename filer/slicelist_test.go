package filer

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func randomSlices(rng *rand.Rand, n int) SliceList {
	l := make(SliceList, n)
	for i := range l {
		l[i] = Slice{Off: rng.Uint64() >> rng.IntN(64), Len: 1 + rng.Uint64N(1<<22)}
		if rng.IntN(4) > 0 {
			l[i].Fid = "3,01" + strings.Repeat("ab", rng.IntN(6)) + "cd"
			l[i].NeedleOff = rng.Uint64N(1 << 22)
		}
	}
	return l
}

func TestSliceListRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := range 200 {
		in := Inode{Ino: 5, Size: 99, Slices: randomSlices(rng, rng.IntN(50))}
		if len(in.Slices) == 0 {
			in.Slices = nil
		}
		b, err := json.Marshal(&in)
		if err != nil {
			t.Fatal(err)
		}
		var out Inode
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("round %d: decoded %+v, want %+v", round, out, in)
		}
	}
}

// State files and Raft snapshots written before the compact form hold
// slice lists as arrays of objects; they must still read.
func TestSliceListReadsArrayForm(t *testing.T) {
	old := `{"ino":7,"size":20,"slices":[{"off":0,"len":10,"fid":"1,0100000001"},{"off":10,"len":10}],"gen":3}`
	var in Inode
	if err := json.Unmarshal([]byte(old), &in); err != nil {
		t.Fatal(err)
	}
	want := SliceList{{Off: 0, Len: 10, Fid: "1,0100000001"}, {Off: 10, Len: 10}}
	if !reflect.DeepEqual(in.Slices, want) || in.Generation != 3 {
		t.Fatalf("decoded %+v", in)
	}
	b, _ := json.Marshal(&in)
	if strings.Contains(string(b), `"off"`) {
		t.Fatalf("re-encoded in the array form: %s", b)
	}
}

func TestSliceListRejectsGarbage(t *testing.T) {
	for _, s := range []string{`"AQ"`, `"Ag=="`, `"AQE="`, `{}`, `3`, `"AQEBAQU="`} {
		var l SliceList
		if err := json.Unmarshal([]byte(s), &l); err == nil {
			t.Errorf("%s decoded to %+v, want an error", s, l)
		}
	}
}

func FuzzSliceList(f *testing.F) {
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 5, 0, 0})
	f.Add([]byte{1, 10, 5, 2, 3, '1', ',', '2'})
	f.Add([]byte{1, 0, 1, 0, 0, 1, 1, 0, 4, 'a', 'b', 'c', 'd'})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeSliceList(b)
		if err != nil {
			return
		}
		enc, err := l.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back SliceList
		if err := back.UnmarshalJSON(enc); err != nil {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if len(back) != len(l) || (len(l) > 0 && !reflect.DeepEqual(back, l)) {
			t.Fatalf("round trip of %x: %+v != %+v", b, back, l)
		}
	})
}
