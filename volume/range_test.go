package volume

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/vfs/errorfs"
)

// rangeCases are (off, n) pairs at the edges of blocks and of a needle of
// size bytes: first and last byte, around each block boundary, spanning
// blocks, the whole needle, and past its end.
func rangeCases(size int64) [][2]int64 {
	cs := [][2]int64{{0, 1}, {size - 1, 1}, {0, size}, {1, size - 2}, {0, size + 100}, {size / 2, size}, {size, 1}, {size + 5, 10}, {3, 0}}
	for b := int64(blockSize); b < size; b += blockSize {
		cs = append(cs, [2]int64{b - 1, 1}, [2]int64{b, 1}, [2]int64{b - 1, 2}, [2]int64{b, blockSize}, [2]int64{b - 7, blockSize + 14}, [2]int64{b - blockSize, blockSize})
	}
	if size > 3*blockSize {
		cs = append(cs, [2]int64{blockSize - 1, 2*blockSize + 2}, [2]int64{4096 * 17, 4096}, [2]int64{size - 128<<10, 128 << 10})
	}
	var out [][2]int64
	for _, c := range cs {
		if c[0] >= 0 && c[1] >= 0 {
			out = append(out, c)
		}
	}
	return out
}

func wantRange(data []byte, off, n int64) []byte {
	size := int64(len(data))
	if off >= size {
		return nil
	}
	return data[off : off+min(n, size-off)]
}

// Range reads of needles of both formats and of odd sizes return exactly
// the bytes asked for, at block boundaries and across them.
func TestReadRangeBoundaries(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	sizes := []int{1, 7, blockSize - 1, blockSize, blockSize + 1, 3*blockSize + 17, 4 << 20}
	key := uint64(0)
	for _, f := range formats {
		for _, size := range sizes {
			key++
			data := testPayload(key, size)
			rec := encodeRecord(&Needle{Key: key, Cookie: 5, AppendNs: key, Data: data}, f)
			if err := v.WriteRecord(bgCtx, rec); err != nil {
				t.Fatal(err)
			}
			for _, c := range rangeCases(int64(size)) {
				r, err := v.ReadRange(key, 5, c[0], c[1])
				if err != nil {
					t.Fatalf("format %d size %d range %v: %v", f, size, c, err)
				}
				if want := wantRange(data, c[0], c[1]); !bytes.Equal(r.Data, want) {
					t.Fatalf("format %d size %d range %v: got %d bytes, want %d", f, size, c, len(r.Data), len(want))
				}
				if r.Off != c[0] || r.Size != int64(size) || r.AppendNs != key || r.CRC != crc32c(data) {
					t.Fatalf("format %d size %d range %v: %+v", f, size, c, r)
				}
			}
		}
	}
	key++
	mustWrite(t, v, key, 5, nil) // an empty needle
	for _, c := range [][2]int64{{0, 0}, {0, 10}, {1, 1}} {
		r, err := v.ReadRange(key, 5, c[0], c[1])
		if err != nil || len(r.Data) != 0 || r.Size != 0 {
			t.Fatalf("empty needle range %v: %+v, %v", c, r, err)
		}
	}
	for _, c := range [][2]int64{{-1, 1}, {0, -1}} {
		if _, err := v.ReadRange(1, 5, c[0], c[1]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("range %v: %v, want ErrInvalid", c, err)
		}
	}
	if _, err := v.ReadRange(1, 6, 0, 1); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("wrong cookie: %v", err)
	}
	if _, err := v.ReadRange(999, 5, 0, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := v.Delete(bgCtx, 1, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadRange(1, 5, 0, 1); !errors.Is(err, ErrDeleted) {
		t.Fatalf("deleted key: %v", err)
	}
}

// A 4 KiB range read of a 4 MiB needle reads one block and the header, not
// the needle; a format 1 needle is still read whole.
func TestReadRangeReadsOnlyItsBlocks(t *testing.T) {
	var armed atomic.Bool
	var read atomic.Int64
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRead && armed.Load() {
			read.Add(int64(op.Len))
		}
		return nil
	})
	v := mustOpenVolume(t, errorfs.Wrap(newTestMemFS(t), inj))
	data := testPayload(1, 4<<20)
	mustWrite(t, v, 1, 1, data)
	if err := v.WriteRecord(bgCtx, encodeRecord(&Needle{Key: 2, Cookie: 1, AppendNs: 1, Data: data}, formatV1)); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	for _, c := range [][2]int64{{0, 4096}, {3 << 20, 4096}, {2<<20 - 100, 200}, {1 << 20, 128 << 10}} {
		read.Store(0)
		r, err := v.ReadRange(1, 1, c[0], c[1])
		if err != nil || !bytes.Equal(r.Data, wantRange(data, c[0], c[1])) {
			t.Fatalf("range %v: %v", c, err)
		}
		blocks := (c[0]+c[1]-1)/blockSize - c[0]/blockSize + 1
		if limit := blocks*blockSize + maxRangeGap + 4096; read.Load() > limit {
			t.Fatalf("range %v of a 4 MiB needle read %d bytes from disk, want at most %d", c, read.Load(), limit)
		}
	}
	read.Store(0)
	if _, err := v.ReadRange(2, 1, 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	if read.Load() < 4<<20 {
		t.Fatalf("range of a format 1 needle read %d bytes; it must read and check the whole needle", read.Load())
	}
}

// A damaged block fails every range read that covers it and marks the
// needle corrupt; ranges elsewhere read correctly until the damage is
// found, and fail from then on until the needle is repaired.
func TestReadRangeDamagedBlock(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	data := testPayload(1, 4*blockSize+100)
	n := mustWrite(t, v, 1, 1, data)
	good := EncodeRecord(n)
	patchFile(t, m, datPath(1), dataStart(v, 1)+2*blockSize+10, []byte{^data[2*blockSize+10]})

	if r, err := v.ReadRange(1, 1, blockSize, blockSize); err != nil || !bytes.Equal(r.Data, data[blockSize:2*blockSize]) {
		t.Fatalf("range before the damaged block: %v", err)
	}
	if r, err := v.ReadRange(1, 1, 3*blockSize, 50); err != nil || !bytes.Equal(r.Data, data[3*blockSize:3*blockSize+50]) {
		t.Fatalf("range after the damaged block: %v", err)
	}
	if _, err := v.ReadRange(1, 1, 2*blockSize+10, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("range of the damaged byte: %v, want ErrCorrupt", err)
	}
	if in := v.Info(); in.CorruptCount != 1 {
		t.Fatalf("corrupt count %d after the damage was found", in.CorruptCount)
	}
	for _, c := range [][2]int64{{0, 10}, {3 * blockSize, 50}} {
		if _, err := v.ReadRange(1, 1, c[0], c[1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("range %v after the damage was found: %v, want ErrCorrupt", c, err)
		}
	}
	if _, err := v.Read(1, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("whole read: %v", err)
	}
	if err := v.WriteRecord(bgCtx, good); err != nil {
		t.Fatal(err)
	}
	if r, err := v.ReadRange(1, 1, 2*blockSize, blockSize); err != nil || !bytes.Equal(r.Data, data[2*blockSize:3*blockSize]) {
		t.Fatalf("range after repair: %v", err)
	}
}

// Damage to the block CRC table or the header is found by a range read of
// the blocks concerned, and a scrub finds damage no range read touched.
func TestReadRangeDamagedTableAndHeader(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	for k := uint64(1); k <= 3; k++ {
		mustWrite(t, v, k, 1, testPayload(k, 3*blockSize))
	}
	off := func(k uint64) int64 { v.mu.RLock(); defer v.mu.RUnlock(); return v.mu.index[k].off }
	patchFile(t, m, datPath(1), off(1)+headerSize+blockCRCSize+1, []byte{0xee}) // CRC of block 1
	patchFile(t, m, datPath(1), off(2)+offCookie, []byte{0xee})                 // header
	patchFile(t, m, datPath(1), dataStart(v, 3)+2*blockSize, []byte{0xee})      // block 2
	if _, err := v.ReadRange(1, 1, 0, 10); err != nil {
		t.Fatalf("block 0 of a needle with a damaged CRC of block 1: %v", err)
	}
	if _, err := v.ReadRange(1, 1, blockSize+5, 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("block with a damaged CRC: %v, want ErrCorrupt", err)
	}
	if _, err := v.ReadRange(2, 1, blockSize, 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("range of a needle with a damaged header: %v, want ErrCorrupt", err)
	}
	bad, err := v.Verify(bgCtx)
	if err != nil || fmt.Sprint(bad) != "[1 2 3]" {
		t.Fatalf("scrub found %v, %v; want [1 2 3]", bad, err)
	}
}

// A volume file of an earlier version (superblock version 1, format 1
// records) keeps working: new records (format 2) live side by side with
// the old ones, both read, whole and in ranges, after a reopen and after a
// vacuum, which keeps each record in its format and rewrites the
// superblock as version 2.
func TestMixedFormatsReopenAndVacuum(t *testing.T) {
	m := newTestMemFS(t)
	sb := superblock{id: 1, replication: "000"}
	if err := writeFileSynced(m, datPath(1), sb.encodeVersion(superblockVersion1)); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir(volTestDir); err != nil {
		t.Fatal(err)
	}
	v, err := OpenVolume(m, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]byte{}
	for k := uint64(1); k <= 6; k++ {
		data := testPayload(k, int(k)*40000)
		want[k] = data
		if k%2 == 1 {
			if err := v.WriteRecord(bgCtx, encodeRecord(&Needle{Key: k, Cookie: 9, AppendNs: k, Data: data}, formatV1)); err != nil {
				t.Fatal(err)
			}
		} else {
			mustWrite(t, v, k, 9, data)
		}
	}
	mustWrite(t, v, 7, 9, []byte("superseded"))
	if _, err := v.Delete(bgCtx, 7, 9); err != nil {
		t.Fatal(err)
	}
	check := func(stage string, v *Volume) {
		t.Helper()
		for k, data := range want {
			v.mu.RLock()
			f := v.mu.index[k].format
			v.mu.RUnlock()
			if wantF := map[bool]format{true: formatV1, false: formatV2}[k%2 == 1]; f != wantF {
				t.Fatalf("%s: key %d in format %d, want %d", stage, k, f, wantF)
			}
			mustRead(t, v, k, 9, data)
			for _, c := range rangeCases(int64(len(data))) {
				r, err := v.ReadRange(k, 9, c[0], c[1])
				if err != nil || !bytes.Equal(r.Data, wantRange(data, c[0], c[1])) {
					t.Fatalf("%s: key %d range %v: %v", stage, k, c, err)
				}
			}
		}
	}
	check("written", v)
	v.Close()
	v = mustOpenVolume(t, m)
	check("reopened", v)
	version := func() uint16 {
		t.Helper()
		got, err := decodeSuperblock(fileBytes(t, m, datPath(1))[:superblockSize])
		if err != nil {
			t.Fatal(err)
		}
		return got.version
	}
	if got := version(); got != superblockVersion1 {
		t.Fatalf("superblock version %d before vacuum, want it left at 1", got)
	}
	if _, _, err := v.Vacuum(bgCtx); err != nil {
		t.Fatal(err)
	}
	check("vacuumed", v)
	if got := version(); got != superblockVersion {
		t.Fatalf("superblock version %d after vacuum, want %d", got, superblockVersion)
	}
}

// FuzzReadRange: whatever bytes a range read finds on disk, it never
// panics, and bytes it returns are those of the needle: when the record
// also decodes whole, they equal that part of its data; a record that is
// not the one the index describes is refused.
func FuzzReadRange(f *testing.F) {
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(1, 3*blockSize+5)}), int64(blockSize-1), int64(2), uint8(0), uint32(0))
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(2, 100)}), int64(0), int64(100), uint8(1), uint32(0))
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(3, 4<<20)}), int64(3<<20), int64(4096), uint8(0), uint32(77))
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(4, 2*blockSize)}), int64(blockSize), int64(blockSize), uint8(2), uint32(blockSize+40))
	f.Add(encodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(5, 10)}, formatV1), int64(0), int64(1), uint8(0), uint32(0))
	f.Add([]byte("CRN2"), int64(0), int64(1), uint8(0), uint32(0))
	f.Add(EncodeRecord(&Needle{Key: 1, Cookie: 2, AppendNs: 3, Data: testPayload(6, 10)}), int64(1), int64(1<<63-1), uint8(0), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, off, n int64, lie uint8, flip uint32) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		want := h
		want.format = formatV2
		switch lie % 4 {
		case 1:
			want.appendNs++
		case 2:
			want.key ^= 1
		}
		if flip != 0 && len(b) > 0 {
			b = bytes.Clone(b)
			b[int(flip)%len(b)] ^= 0x5a
		}
		got, err := readRange(bytes.NewReader(b), 0, want, off, n)
		if err != nil {
			return
		}
		if lie%4 == 1 || lie%4 == 2 {
			t.Fatal("a record with another key or append time was accepted")
		}
		if int64(len(got)) != n {
			t.Fatalf("asked %d bytes at %d, got %d", n, off, len(got))
		}
		if whole, err := DecodeRecord(b); err == nil {
			if !bytes.Equal(got, whole.Data[off:off+n]) {
				t.Fatalf("range [%d,+%d) differs from the decoded needle", off, n)
			}
		}
	})
}

// FuzzParseRange: a Range header parseRange accepts is answered with the
// same bytes and Content-Range as http.ServeContent would answer it.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=5-", "bytes=-3", "bytes=3-2", "bytes=0-1,4-5", "bytes= 2 - 4", "bytes=-0",
		"bytes=100-", "items=0-1", "bytes=+1-2", "bytes=-", "bytes=1", "bytes=99999999999999999999-"} {
		f.Add(s, uint16(10))
	}
	f.Fuzz(func(t *testing.T, spec string, size uint16) {
		if size == 0 {
			return
		}
		data := testPayload(uint64(size), int(size))
		off, n, ok := parseRange(spec, int64(size))
		if !ok {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Range", spec)
		rec := httptest.NewRecorder()
		http.ServeContent(rec, req, "", time.Time{}, bytes.NewReader(data))
		if off >= int64(size) {
			if rec.Code != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("%q on %d bytes: unsatisfiable here, ServeContent answers %d", spec, size, rec.Code)
			}
			return
		}
		cr := "bytes " + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10) + "/" + strconv.Itoa(int(size))
		if rec.Code != http.StatusPartialContent || rec.Header().Get("Content-Range") != cr || !bytes.Equal(rec.Body.Bytes(), data[off:off+n]) {
			t.Fatalf("%q on %d bytes: [%d,+%d) here, ServeContent answers %d %q", spec, size, off, n, rec.Code, rec.Header().Get("Content-Range"))
		}
	})
}

// A whole-needle range read for a sender (ReadRangeBuf) reads into reused
// buffers: each read returns its own needle's bytes however the buffers
// go round, a damaged needle fails with ErrCorrupt and is marked, and the
// needle is not put in the needle cache.
func TestReadRangeBufWholeNeedles(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	v.setCache(newNeedleCache(DefaultCacheBytes))
	var datas [][]byte
	for i := range 4 {
		d := testPayload(uint64(i+1), 4*poolMinRecord+i*1000)
		mustWrite(t, v, uint64(i+1), 1, d)
		datas = append(datas, d)
	}
	for round := range 3 {
		var held [][]byte
		var releases []func()
		for i, d := range datas {
			r, release, err := v.ReadRangeBuf(uint64(i+1), 1, 0, int64(len(d)))
			if err != nil || !bytes.Equal(r.Data, d) {
				t.Fatalf("round %d, needle %d: err %v, or other bytes", round, i+1, err)
			}
			held, releases = append(held, r.Data), append(releases, release)
		}
		// Every buffer is still held: none was handed out twice.
		for i, b := range held {
			if !bytes.Equal(b, datas[i]) {
				t.Fatalf("round %d: needle %d's bytes changed while held", round, i+1)
			}
		}
		for _, release := range releases {
			release()
		}
	}
	if n := v.cache.Load().get(cacheKey{vol: v, key: 1, appendNs: v.mu.index[1].appendNs, off: v.mu.index[1].off}); n != nil {
		t.Fatal("a whole-needle read for a sender was put in the needle cache")
	}
	// A part of a needle, and a needle too small to pool, read as before.
	small := testPayload(9, 1000)
	mustWrite(t, v, 9, 1, small)
	if r, release, err := v.ReadRangeBuf(9, 1, 0, 1000); err != nil || !bytes.Equal(r.Data, small) {
		t.Fatalf("small needle: %v", err)
	} else {
		release()
	}
	if r, release, err := v.ReadRangeBuf(2, 1, 10, blockSize); err != nil || !bytes.Equal(r.Data, datas[1][10:10+blockSize]) {
		t.Fatalf("part of a needle: %v", err)
	} else {
		release()
	}

	patchFile(t, m, datPath(1), dataStart(v, 3)+blockSize+3, []byte{^datas[2][blockSize+3]})
	if _, release, err := v.ReadRangeBuf(3, 1, 0, int64(len(datas[2]))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("whole read of a damaged needle: %v, want ErrCorrupt", err)
	} else {
		release()
	}
	if in := v.Info(); in.CorruptCount != 1 {
		t.Fatalf("corrupt count %d after the damage was found", in.CorruptCount)
	}
	if _, err := v.ReadRange(3, 1, 0, 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("range of the needle marked corrupt: %v, want ErrCorrupt", err)
	}
}
