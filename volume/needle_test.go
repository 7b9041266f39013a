package volume

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 9, 4096, 100000} {
		n := &Needle{Key: 0x0102030405060708, Cookie: 0xdeadbeef, AppendNs: 12345, Data: testPayload(uint64(size), size)}
		rec := EncodeRecord(n)
		if len(rec)%8 != 0 || int64(len(rec)) != recordSize(uint32(size)) || len(rec) < headerSize+size {
			t.Fatalf("size %d: record of %d bytes", size, len(rec))
		}
		got, err := DecodeRecord(rec)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if got.Key != n.Key || got.Cookie != n.Cookie || got.AppendNs != n.AppendNs || got.Deleted || !bytes.Equal(got.Data, n.Data) {
			t.Fatalf("size %d: decoded %+v", size, got)
		}
	}
	tomb, err := DecodeRecord(EncodeRecord(&Needle{Key: 9, Cookie: 1, AppendNs: 5, Deleted: true, Data: []byte("ignored")}))
	if err != nil || !tomb.Deleted || len(tomb.Data) != 0 {
		t.Fatalf("tombstone: %+v, %v", tomb, err)
	}
}

func TestRecordLayout(t *testing.T) {
	rec := EncodeRecord(&Needle{Key: 0x1122334455667788, Cookie: 0xaabbccdd, AppendNs: 0x0102030405060708, Data: []byte("abc")})
	if string(rec[0:4]) != "CRN1" {
		t.Fatalf("magic %q", rec[0:4])
	}
	if !bytes.Equal(rec[12:16], []byte{0xdd, 0xcc, 0xbb, 0xaa}) || rec[16] != 0x88 || rec[24] != 0x08 || rec[32] != 3 {
		t.Fatalf("fields not little-endian at their offsets: % x", rec[:40])
	}
	if crc32c(rec[8:40]) != uint32(rec[4])|uint32(rec[5])<<8|uint32(rec[6])<<16|uint32(rec[7])<<24 {
		t.Fatal("header CRC does not cover bytes 8..40")
	}
	if len(rec) != 48 || string(rec[40:43]) != "abc" || !bytes.Equal(rec[43:], make([]byte, 5)) {
		t.Fatalf("data/padding wrong: % x", rec[40:])
	}
}

// Every single-bit flip anywhere in a record must be detected.
func TestDecodeRecordDetectsEveryBitFlip(t *testing.T) {
	rec := EncodeRecord(&Needle{Key: 42, Cookie: 7, AppendNs: 99, Data: []byte("hello, world")})
	for i := range rec {
		for bit := range 8 {
			b := bytes.Clone(rec)
			b[i] ^= 1 << bit
			if _, err := DecodeRecord(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip of byte %d bit %d: %v, want ErrCorrupt", i, bit, err)
			}
		}
	}
	for _, cut := range []int{0, 1, 39, 40, len(rec) - 1} {
		if _, err := DecodeRecord(rec[:cut]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", cut, err)
		}
	}
	if _, err := DecodeRecord(append(bytes.Clone(rec), make([]byte, 8)...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: []byte("data")}))
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Deleted: true}))
	f.Add(EncodeRecord(&Needle{Key: ^uint64(0), Cookie: ^uint32(0), AppendNs: ^uint64(0), Data: make([]byte, 1000)}))
	f.Add([]byte{})
	f.Add([]byte("CRN1"))
	huge := EncodeRecord(&Needle{Key: 1})
	huge[offDataLen], huge[offDataLen+3] = 0xff, 0xff // length beyond MaxNeedleSize
	f.Add(huge)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if again := EncodeRecord(n); !bytes.Equal(again, b) {
			t.Fatalf("decoded record does not re-encode to its input")
		}
	})
}

func TestSuperblockRoundTripAndValidation(t *testing.T) {
	sb := superblock{id: 77, collection: "pics-2024_a", replication: "010"}
	b := sb.encode()
	if len(b) != superblockSize || len(b)%8 != 0 {
		t.Fatalf("superblock %d bytes", len(b))
	}
	got, err := decodeSuperblock(b)
	if err != nil || got != sb {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := decodeSuperblock(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	for _, bad := range []string{"a b", "x/y", "ü", string(make([]byte, 65)), ".."} {
		if err := ValidCollection(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("collection %q accepted", bad)
		}
	}
	for _, bad := range []string{"1", "0011", "00a", "-01"} {
		if err := validReplication(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("replication %q accepted", bad)
		}
	}
}

func TestFileNames(t *testing.T) {
	for _, tc := range []struct {
		coll string
		id   uint32
		base string
	}{{"", 5, "5"}, {"pics", 12, "pics_12"}, {"a_b", 3, "a_b_3"}, {"x", 4294967295, "x_4294967295"}} {
		if got := fileBase(tc.coll, tc.id); got != tc.base {
			t.Fatalf("fileBase(%q,%d) = %q", tc.coll, tc.id, got)
		}
		coll, id, ok := parseFileBase(tc.base)
		if !ok || coll != tc.coll || id != tc.id {
			t.Fatalf("parseFileBase(%q) = %q %d %v", tc.base, coll, id, ok)
		}
	}
	for _, bad := range []string{"", "_5", "x_", "x_y", "05", "4294967296", "a b_1", "x_-1"} {
		if _, _, ok := parseFileBase(bad); ok {
			t.Fatalf("parseFileBase(%q) accepted", bad)
		}
	}
}
