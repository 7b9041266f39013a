package filer

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	for typ, newOp := range opTypes {
		c := &Command{ClientID: "x", Seq: 3, Time: 99, Op: newOp()}
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCommand(b)
		if err != nil || d.Op.OpType() != typ || d.Seq != 3 || d.ClientID != "x" || d.Time != 99 {
			t.Fatalf("%s: %+v %v", typ, d, err)
		}
	}
	for _, bad := range []string{``, `{}`, `{"v":3,"type":"mkdir","op":{}}`, `{"v":0,"type":"mkdir","op":{}}`, `{"v":1,"type":"nope","op":{}}`,
		`{"v":1,"type":"mkdir"}`, `{"v":1,"type":"mkdir","op":null}`, `{"v":1,"type":"mkdir","op":{"parent":"x"}}`} {
		if _, err := DecodeCommand([]byte(bad)); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestInlineCommandVersion checks that only a commit carrying inline data
// is written as version 2: a filer that knows only version 1 would decode
// it without the data (a hole where bytes were acknowledged), and must
// refuse it instead.
func TestInlineCommandVersion(t *testing.T) {
	plain, _ := (&Command{Op: &CommitSlices{Ino: 2, Slices: []Slice{{Len: 1, Fid: "1,0100000001"}}}}).Encode()
	inline, _ := (&Command{Op: &CommitSlices{Ino: 2, Inline: []InlineData{{Off: 4, Data: []byte("abc")}}}}).Encode()
	if !bytes.Contains(plain, []byte(`"v":1,`)) || !bytes.Contains(inline, []byte(`"v":2,`)) {
		t.Fatalf("versions: plain %s, inline %s", plain, inline)
	}
	if json.Valid(inline) || !bytes.HasSuffix(inline, []byte("abc")) {
		t.Fatalf("inline command %q: want a non-JSON encoding ending in the raw bytes", inline)
	}
	for _, bad := range [][]byte{inline[:len(inline)-1], append(append([]byte{}, inline...), 'x'), inline[:5], plain[:0]} {
		if _, err := DecodeCommand(bad); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	d, err := DecodeCommand(inline)
	if err != nil {
		t.Fatal(err)
	}
	if cs := d.Op.(*CommitSlices); len(cs.Inline) != 1 || cs.Inline[0].Off != 4 || string(cs.Inline[0].Data) != "abc" {
		t.Fatalf("decoded %+v", cs)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, op := range []Op{&Mkdir{Parent: 1, Name: "a"}, &CommitSlices{Ino: 2, Slices: []Slice{{Len: 1, Fid: "1,0100000001"}}},
		&Rename{OldParent: 1, OldName: "a", NewParent: 1, NewName: "b", Flags: 1},
		&CommitSlices{Ino: 2, Inline: []InlineData{{Off: 1, Data: []byte("xy")}, {Off: 9, Data: []byte("z")}}}, &DequeueDeleted{Fids: []string{"1,0100000001"}}} {
		b, _ := (&Command{ClientID: "c", Seq: 1, Op: op}).Encode()
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"type":"setxattr","op":{"value":"AAEC"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded command does not encode: %v", err)
		}
		c2, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		b2, _ := c2.Encode()
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b, b2)
		}
	})
}

// TestCommitSlicesRoundTrip: every field of a commit survives encoding
// and decoding, with and without inline writes.
func TestCommitSlicesRoundTrip(t *testing.T) {
	for _, inline := range [][]InlineData{nil, {{Off: 4096, Data: []byte("abc")}, {Off: 1 << 40, Data: []byte("z")}}} {
		want := &CommitSlices{Ino: 7, Slices: []Slice{{Off: 1, Len: 2, Fid: "3,0400000005", NeedleOff: 6}},
			Size: 1 << 33, Mtime: -5, Truncate: true, OmitSlices: true, Inline: inline}
		b, err := (&Command{Op: want}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		got := d.Op.(*CommitSlices)
		if len(got.Inline) != len(inline) {
			t.Fatalf("inline writes %+v, want %+v", got.Inline, inline)
		}
		for i := range inline {
			if got.Inline[i].Off != inline[i].Off || !bytes.Equal(got.Inline[i].Data, inline[i].Data) {
				t.Fatalf("inline write %d: %+v, want %+v", i, got.Inline[i], inline[i])
			}
		}
		g, w := *got, *want
		g.Inline, w.Inline = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("decoded %+v, want %+v", g, w)
		}
	}
}
