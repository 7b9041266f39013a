package filer

import (
	"encoding/json"
	"reflect"
	"testing"
)

func testInodes() []*Inode {
	return []*Inode{
		{Ino: 1, Mode: 0o40755, Nlink: 2, Parent: 1, QuotaRoot: 1, Generation: 1},
		{Ino: 7, Mode: 0o100644, Size: 9000, Mtime: 5, Generation: 3, QuotaRoot: 1,
			Slices: SliceList{{Off: 0, Len: 4096, Fid: "3,01ab00000001"}, {Off: 8192, Len: 808, Fid: "3,01ac00000001", NeedleOff: 12}, {Off: 4096, Len: 10}}},
		{Ino: 8, Mode: 0o120777, Size: 22, Target: `odd ,"slices":"x" name\`, Snapshot: 4},
		{Ino: 9, Mode: 0o100600, Slices: SliceList{{Off: 1, Len: 1, Fid: "1,0100000001"}}, QuotaRoot: 2, Snapshot: 0},
	}
}

// TestStoredInode: encodeInode stores an inode without its slice list
// (the pieces live in the slices bucket) and round-trips the rest through
// decodeInode, and every JSON form of an inode written before (the list
// as a base64 string anywhere, or as an array of objects) still decodes
// to the same inode with its list, which a restore moves to the bucket.
func TestStoredInode(t *testing.T) {
	for _, in := range testInodes() {
		var got Inode
		head := *in
		head.Slices = nil
		if err := decodeInode(encodeInode(in), &got); err != nil || !reflect.DeepEqual(got, head) {
			t.Fatalf("round trip of %+v: %+v, %v", in, got, err)
		}
		old, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		got = Inode{}
		if err := decodeInode(old, &got); err != nil || !reflect.DeepEqual(&got, in) {
			t.Fatalf("json.Marshal form %s: %+v, %v", old, got, err)
		}
		got = Inode{}
		if err := decodeInode(encodeEmbeddedInode(in), &got); err != nil || !reflect.DeepEqual(&got, in) {
			t.Fatalf("list-last form %s: %+v, %v", encodeEmbeddedInode(in), got, err)
		}
		type plain Inode // no MarshalJSON on the list: an array of objects
		arr, err := json.Marshal(struct {
			*plain
			Slices []Slice `json:"slices,omitempty"`
		}{(*plain)(in), in.Slices})
		if err != nil {
			t.Fatal(err)
		}
		got = Inode{}
		if err := decodeInode(arr, &got); err != nil || !reflect.DeepEqual(&got, in) {
			t.Fatalf("array form %s: %+v, %v", arr, got, err)
		}
	}
}

// encodeEmbeddedInode is how the embedded format (formatEmbedded) stored
// an inode: its JSON with the slice list as the last member.
func encodeEmbeddedInode(in *Inode) []byte {
	head := *in
	head.Slices = nil
	b, err := json.Marshal(&head)
	if err != nil {
		panic(err)
	}
	if len(in.Slices) == 0 {
		return b
	}
	b = append(b[:len(b)-1], `,"slices":"`...)
	b = in.Slices.appendBase64(b)
	return append(b, '"', '}')
}

// FuzzDecodeInode: any bytes either fail to decode or decode to an inode
// whose stored form decodes to the same inode.
func FuzzDecodeInode(f *testing.F) {
	for _, in := range testInodes() {
		f.Add(encodeInode(in))
		b, _ := json.Marshal(in)
		f.Add(b)
	}
	f.Add([]byte(`{"ino":1,"slices":"AQ=="}`))
	f.Add([]byte(`{"ino":1,"slices":"!!"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := string(b)
		var in Inode
		if err := decodeInode(b, &in); err != nil {
			return
		}
		if string(b) != orig {
			t.Fatal("decodeInode modified its input")
		}
		var again Inode
		if err := decodeInode(encodeInode(&in), &again); err != nil {
			t.Fatalf("stored form of %+v does not decode: %v", in, err)
		}
		in.Slices = nil // not stored in the inode record
		if !reflect.DeepEqual(&again, &in) {
			t.Fatalf("%+v\nbecame %+v", in, again)
		}
	})
}
