package volume

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

var formats = []format{formatV1, formatV2}

func TestRecordRoundTrip(t *testing.T) {
	for _, f := range formats {
		for _, size := range []int{0, 1, 7, 8, 9, 4096, blockSize - 1, blockSize, blockSize + 1, 100000, 3*blockSize + 17} {
			n := &Needle{Key: 0x0102030405060708, Cookie: 0xdeadbeef, AppendNs: 12345, Data: testPayload(uint64(size), size)}
			rec := encodeRecord(n, f)
			if len(rec)%8 != 0 || int64(len(rec)) != recordSize(f, uint32(size)) || int64(len(rec)) < f.dataOffset(uint32(size))+int64(size) {
				t.Fatalf("format %d size %d: record of %d bytes", f, size, len(rec))
			}
			got, err := DecodeRecord(rec)
			if err != nil {
				t.Fatalf("format %d size %d: %v", f, size, err)
			}
			if got.Key != n.Key || got.Cookie != n.Cookie || got.AppendNs != n.AppendNs || got.Deleted || !bytes.Equal(got.Data, n.Data) || got.CRC != crc32c(n.Data) {
				t.Fatalf("format %d size %d: decoded %+v", f, size, got)
			}
		}
		tomb, err := DecodeRecord(encodeRecord(&Needle{Key: 9, Cookie: 1, AppendNs: 5, Deleted: true, Data: []byte("ignored")}, f))
		if err != nil || !tomb.Deleted || len(tomb.Data) != 0 {
			t.Fatalf("format %d tombstone: %+v, %v", f, tomb, err)
		}
	}
	if rec := EncodeRecord(&Needle{Key: 1, Data: []byte("x")}); string(rec[:4]) != "CRN2" {
		t.Fatalf("EncodeRecord writes magic %q, want the current format CRN2", rec[:4])
	}
}

func TestRecordLayout(t *testing.T) {
	rec := encodeRecord(&Needle{Key: 0x1122334455667788, Cookie: 0xaabbccdd, AppendNs: 0x0102030405060708, Data: []byte("abc")}, formatV1)
	if string(rec[0:4]) != "CRN1" {
		t.Fatalf("magic %q", rec[0:4])
	}
	if !bytes.Equal(rec[12:16], []byte{0xdd, 0xcc, 0xbb, 0xaa}) || rec[16] != 0x88 || rec[24] != 0x08 || rec[32] != 3 {
		t.Fatalf("fields not little-endian at their offsets: % x", rec[:40])
	}
	if crc32c(rec[8:40]) != binary.LittleEndian.Uint32(rec[4:]) {
		t.Fatal("header CRC does not cover bytes 8..40")
	}
	if len(rec) != 48 || string(rec[40:43]) != "abc" || !bytes.Equal(rec[43:], make([]byte, 5)) {
		t.Fatalf("data/padding wrong: % x", rec[40:])
	}
}

// Format 2: the format 1 header with magic CRN2, then one CRC32C per 64 KiB
// block of the data, then the data and padding.
func TestRecordLayoutV2(t *testing.T) {
	data := testPayload(3, 2*blockSize+5)
	rec := encodeRecord(&Needle{Key: 0x1122334455667788, Cookie: 0xaabbccdd, AppendNs: 0x0102030405060708, Data: data}, formatV2)
	if string(rec[0:4]) != "CRN2" {
		t.Fatalf("magic %q", rec[0:4])
	}
	if !bytes.Equal(rec[12:16], []byte{0xdd, 0xcc, 0xbb, 0xaa}) || rec[16] != 0x88 || rec[24] != 0x08 ||
		binary.LittleEndian.Uint32(rec[32:]) != uint32(len(data)) || binary.LittleEndian.Uint32(rec[36:]) != crc32c(data) {
		t.Fatalf("header fields wrong: % x", rec[:40])
	}
	if crc32c(rec[8:40]) != binary.LittleEndian.Uint32(rec[4:]) {
		t.Fatal("header CRC does not cover bytes 8..40")
	}
	blocks := [][]byte{data[:blockSize], data[blockSize : 2*blockSize], data[2*blockSize:]}
	for i, b := range blocks {
		if got := binary.LittleEndian.Uint32(rec[40+4*i:]); got != crc32c(b) {
			t.Fatalf("block %d CRC %#x, want %#x", i, got, crc32c(b))
		}
	}
	start := 40 + 4*len(blocks)
	if !bytes.Equal(rec[start:start+len(data)], data) {
		t.Fatal("data not right after the block CRC table")
	}
	if pad := rec[start+len(data):]; len(rec)%8 != 0 || len(pad) >= 8 || !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Fatalf("padding wrong: %d bytes % x", len(pad), pad)
	}
	empty := encodeRecord(&Needle{Key: 1}, formatV2)
	if len(empty) != 40 {
		t.Fatalf("empty format 2 record is %d bytes, want 40 (no table)", len(empty))
	}
}

// Every single-bit flip anywhere in a small record must be detected, in
// both formats; in a record of several blocks, flips sampled across it.
func TestDecodeRecordDetectsEveryBitFlip(t *testing.T) {
	for _, f := range formats {
		rec := encodeRecord(&Needle{Key: 42, Cookie: 7, AppendNs: 99, Data: []byte("hello, world")}, f)
		for i := range rec {
			for bit := range 8 {
				b := bytes.Clone(rec)
				b[i] ^= 1 << bit
				if _, err := DecodeRecord(b); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("format %d: flip of byte %d bit %d: %v, want ErrCorrupt", f, i, bit, err)
				}
			}
		}
		for _, cut := range []int{0, 1, 39, 40, len(rec) - 1} {
			if _, err := DecodeRecord(rec[:cut]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("format %d: truncated to %d: %v", f, cut, err)
			}
		}
		if _, err := DecodeRecord(append(bytes.Clone(rec), make([]byte, 8)...)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("format %d: trailing bytes: %v", f, err)
		}
		big := encodeRecord(&Needle{Key: 43, Cookie: 7, AppendNs: 99, Data: testPayload(43, 3*blockSize+11)}, f)
		for i := 0; i < len(big); i += 997 {
			b := bytes.Clone(big)
			b[i] ^= 0x10
			if _, err := DecodeRecord(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("format %d: flip of byte %d of %d: %v, want ErrCorrupt", f, i, len(big), err)
			}
		}
	}
}

// A format 1 record relabelled as format 2 (or the reverse) does not
// decode: the sizes and CRCs no longer agree.
func TestDecodeRecordFormatsDoNotMix(t *testing.T) {
	for _, f := range formats {
		rec := encodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(1, 1000)}, f)
		other := formatV1
		if f == formatV1 {
			other = formatV2
		}
		binary.LittleEndian.PutUint32(rec[offMagic:], other.magic())
		if _, err := DecodeRecord(rec); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("format %d record relabelled %d: %v", f, other, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, fm := range formats {
		f.Add(encodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: []byte("data")}, fm))
		f.Add(encodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Deleted: true}, fm))
		f.Add(encodeRecord(&Needle{Key: ^uint64(0), Cookie: ^uint32(0), AppendNs: ^uint64(0), Data: make([]byte, 1000)}, fm))
		huge := encodeRecord(&Needle{Key: 1}, fm)
		huge[offDataLen], huge[offDataLen+3] = 0xff, 0xff // length beyond MaxNeedleSize
		f.Add(huge)
	}
	f.Add(encodeRecord(&Needle{Key: 5, Cookie: 6, AppendNs: 7, Data: testPayload(5, blockSize+3)}, formatV2))
	f.Add([]byte{})
	f.Add([]byte("CRN1"))
	f.Add([]byte("CRN2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		fm := formatV1
		if binary.LittleEndian.Uint32(b) == recordMagicV2 {
			fm = formatV2
		}
		if again := encodeRecord(n, fm); !bytes.Equal(again, b) {
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
	if want := (superblock{id: 77, collection: "pics-2024_a", replication: "010", version: superblockVersion}); err != nil || got != want {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	old := sb.encodeVersion(superblockVersion1)
	if got, err := decodeSuperblock(old); err != nil || got.version != superblockVersion1 || got.id != sb.id {
		t.Fatalf("decode of a version 1 superblock = %+v, %v", got, err)
	}
	for _, v := range []uint16{0, superblockVersion + 1} {
		if _, err := decodeSuperblock(sb.encodeVersion(v)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("superblock version %d accepted: %v", v, err)
		}
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

// The block CRCs of format 2 combine to the CRC32C of the whole data, for
// every length around block boundaries and odd ones.
func TestWholeCRCFromBlocks(t *testing.T) {
	if castagnoli[128] != castagnoliReversed {
		t.Fatalf("castagnoliReversed %#x is not hash/crc32's Castagnoli polynomial %#x", castagnoliReversed, castagnoli[128])
	}
	data := testPayload(9, 5*blockSize+3)
	for _, n := range []int{0, 1, 2, 3, 100, blockSize - 1, blockSize, blockSize + 1, 2*blockSize - 1, 2 * blockSize, 3*blockSize + 17, 5*blockSize + 3} {
		d := data[:n]
		crcs := func(i int64) uint32 { return crc32c(d[i*blockSize : min(int64(n), (i+1)*blockSize)]) }
		if got, want := wholeCRC(crcs, uint32(n)), crc32c(d); got != want {
			t.Fatalf("%d bytes: combined %#x, want %#x", n, got, want)
		}
	}
	for _, n := range []int64{0, 1, 7, 4096, blockSize} {
		a, b := data[:100], make([]byte, n)
		if got, want := crc32cShift(crc32c(a), n)^crc32c(b), crc32c(append(bytes.Clone(a), b...)); got != want {
			t.Fatalf("shift by %d zero bytes: %#x, want %#x", n, got, want)
		}
	}
}

// TestRecordPoolReuse checks that a record built in a buffer reused from the
// record pool, which holds an older record's bytes, is the record a fresh
// buffer gives: header, block CRC table and padding are not left over.
func TestRecordPoolReuse(t *testing.T) {
	reused := 0
	for i := range 100 {
		// Sizes of one class, whose records end with padding.
		size := poolMinRecord + 1 + i%7
		old := make([]byte, recordSize(formatCurrent, uint32(size)), ((recordSize(formatCurrent, uint32(size))-1)/recordClass+1)*recordClass)
		for j := range old {
			old[j] = 0xff
		}
		putRecordBuf(old)
		n := newRecord(uint64(i), 7, size)
		if n.pooled != nil && &n.pooled[0] == &old[0] {
			reused++
		}
		copy(n.Data, testPayload(uint64(i), size))
		n.AppendNs = 99
		rec := EncodeRecord(n)
		want := encodeRecord(&Needle{Key: uint64(i), Cookie: 7, AppendNs: 99, Data: testPayload(uint64(i), size)}, formatCurrent)
		if !bytes.Equal(rec, want) {
			t.Fatalf("size %d: the record built in a pooled buffer differs from a fresh one", size)
		}
		if _, err := verifyRecord(rec); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		n.recycle()
		if n.Data != nil || n.pooled != nil {
			t.Fatalf("recycle left the needle pointing at the pooled buffer")
		}
	}
	if reused == 0 {
		t.Fatalf("no buffer was reused from the record pool in 100 tries")
	}
	// Small records are not pooled.
	if n := newRecord(1, 1, 1000); n.pooled != nil {
		t.Fatalf("a record of 1000 bytes came from the pool")
	}
}
