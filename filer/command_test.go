package filer

import (
	"bytes"
	"errors"
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
	for _, bad := range []string{``, `{}`, `{"v":2,"type":"mkdir","op":{}}`, `{"v":1,"type":"nope","op":{}}`,
		`{"v":1,"type":"mkdir"}`, `{"v":1,"type":"mkdir","op":null}`, `{"v":1,"type":"mkdir","op":{"parent":"x"}}`} {
		if _, err := DecodeCommand([]byte(bad)); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, op := range []Op{&Mkdir{Parent: 1, Name: "a"}, &CommitSlices{Ino: 2, Slices: []Slice{{Len: 1, Fid: "1,0100000001"}}},
		&Rename{OldParent: 1, OldName: "a", NewParent: 1, NewName: "b", Flags: 1}, &DequeueDeleted{Fids: []string{"1,0100000001"}}} {
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
