package fid

import (
	"errors"
	"testing"
)

func TestParseFormat(t *testing.T) {
	cases := []struct {
		in   string
		want FileID
	}{
		{"3,01637037d6", FileID{3, 0x01, 0x637037d6}},
		{"/3,01637037d6.jpg", FileID{3, 0x01, 0x637037d6}},
		{"3/01637037d6", FileID{3, 0x01, 0x637037d6}},
		{"7,0a1b2c3d00000001_2", FileID{7, 0x0a1b2c3d + 2, 1}},
		{"4294967295,ffffffffffffffffffffffff", FileID{4294967295, ^uint64(0), 0xffffffff}},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if s := (FileID{3, 1, 0x637037d6}).String(); s != "3,01637037d6" {
		t.Errorf("String = %q", s)
	}
	if s := (FileID{1, 0x123, 5}).String(); s != "1,012300000005" {
		t.Errorf("String = %q", s)
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"", ",", "3", "3,", "x,01637037d6", "3,637037d6", "3,zz637037d6",
		"3,01637037zz", "-1,01637037d6", "3,01637037d6_x", "99999999999,01637037d6",
		"3,0102030405060708091011121314", "3,ffffffffffffffff00000000_1"} {
		if _, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) err = %v, want ErrInvalid", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"3,01637037d6", "/1,ff00000000.png", "2,1_3", "9,0000000000000001abcdef01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(id.String())
		if err != nil || back != id {
			t.Fatalf("round trip %q -> %v -> %q -> %v, %v", s, id, id.String(), back, err)
		}
	})
}
