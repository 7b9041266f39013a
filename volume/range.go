package volume

import (
	"errors"
	"fmt"
	"io"
)

// Range is part of a needle's data, as ReadRange returns it.
type Range struct {
	Data     []byte // bytes [Off, Off+len(Data)) of the needle; do not modify
	Off      int64
	Size     int64 // the length of the whole needle
	AppendNs uint64
	CRC      uint32 // CRC32C of the whole needle (its ETag)
}

// maxRangeGap is how many bytes between the block CRC table and the first
// block a range read reads rather than issuing a second read: one read of
// up to 128 KiB more costs less than another seek on a disk.
const maxRangeGap = 128 << 10

// ReadRange returns bytes [off, off+n) of the live needle key if its cookie
// matches, fewer where the needle ends (none when off is at or past its
// end). For a needle of format 2 it reads and checks only the blocks the
// range covers, plus the header and their CRCs; a needle of format 1, or a
// range covering every block, is read and checked whole as Read does.
//
// A block that fails its CRC fails the read with ErrCorrupt and marks the
// needle corrupt, as Read does: from then on every read of it fails until
// it is repaired from a replica. Ranges that do not cover a damaged block
// read correctly until the damage is found (by such a read, a scrub, or the
// scan when the volume opens). Errors: those of Read, and ErrInvalid for a
// negative off or n.
func (v *Volume) ReadRange(key uint64, cookie uint32, off, n int64) (Range, error) {
	r, _, err := v.rangeRead(key, cookie, off, n, false)
	return r, err
}

// ReadRangeBuf is ReadRange for a caller that sends the bytes on at once
// (the HTTP range read): a range covering a whole needle that is not in
// the needle cache is read into a reused buffer (getRecordBuf) rather than
// a new one, and is not cached. release, never nil, gives the buffer back:
// the caller calls it once it no longer reads r.Data.
//
// Such a read is the mount fetching a whole chunk, which it caches itself;
// a fresh buffer of a few MiB costs its zeroing and, while the heap grows,
// a page fault per page (docs/storage-core.md).
func (v *Volume) ReadRangeBuf(key uint64, cookie uint32, off, n int64) (r Range, release func(), err error) {
	return v.rangeRead(key, cookie, off, n, true)
}

func (v *Volume) rangeRead(key uint64, cookie uint32, off, n int64, reuse bool) (Range, func(), error) {
	r, release, err := v.readRangeOnce(key, cookie, off, n, reuse)
	if release == nil {
		release = func() {}
	}
	return r, release, err
}

func (v *Volume) readRangeOnce(key uint64, cookie uint32, off, n int64, reuse bool) (Range, func(), error) {
	if off < 0 || n < 0 {
		return Range{}, nil, fmt.Errorf("volume: range of %d bytes at %d of needle %d: %w", n, off, key, ErrInvalid)
	}
	v.mu.RLock()
	e, err := v.liveLocked(key, cookie)
	if err != nil {
		v.mu.RUnlock()
		return Range{}, nil, err
	}
	size := int64(e.dataLen)
	r := Range{Off: off, Size: size, AppendNs: e.appendNs, CRC: e.crc}
	n = max(0, min(n, size-off))
	if n == 0 {
		v.mu.RUnlock()
		return r, nil, nil
	}
	if whole := v.cache.Load().get(cacheKey{vol: v, key: key, appendNs: e.appendNs, off: e.off}); whole != nil {
		v.mu.RUnlock()
		r.Data = whole.Data[off : off+n]
		return r, nil, nil
	}
	first, last := off/blockSize, (off+n-1)/blockSize
	if e.format != formatV2 || (first == 0 && last == blockCount(e.dataLen)-1) {
		if reuse && e.size() >= poolMinRecord {
			rec, _ := getRecordBuf(e.size())
			nd, err := v.readAndUnlock(key, e, rec)
			if err != nil {
				putRecordBuf(rec)
				return Range{}, nil, err
			}
			return rangeOf(nd, off, n), func() { putRecordBuf(rec) }, nil
		}
		v.mu.RUnlock()
		r, err := v.readRangeWhole(key, cookie, off, n)
		return r, nil, err
	}
	if e.corrupt {
		v.mu.RUnlock()
		return Range{}, nil, fmt.Errorf("volume: needle %d in volume %s failed its checksum; repair it from a replica: %w", key, v.base, ErrCorrupt)
	}
	want := header{format: e.format, cookie: e.cookie, key: key, appendNs: e.appendNs, dataLen: e.dataLen, dataCRC: e.crc}
	r.Data, err = readRange(v.mu.file, e.off, want, off, n)
	v.mu.RUnlock()
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			v.markCorrupt(key, e)
			return Range{}, nil, fmt.Errorf("volume: needle %d in volume %s needs repair from a replica: %w", key, v.base, err)
		}
		return Range{}, nil, fmt.Errorf("volume: read needle %d at offset %d of %s: %w", key, e.off, v.path(extData), err)
	}
	return r, nil, nil
}

// readRangeWhole serves a range from a whole-needle Read.
func (v *Volume) readRangeWhole(key uint64, cookie uint32, off, n int64) (Range, error) {
	nd, err := v.Read(key, cookie)
	if err != nil {
		return Range{}, err
	}
	return rangeOf(nd, off, n), nil
}

// rangeOf returns bytes [off, off+n) of the verified needle nd, fewer
// where it ends.
func rangeOf(nd *Needle, off, n int64) Range {
	size := int64(len(nd.Data))
	r := Range{Off: off, Size: size, AppendNs: nd.AppendNs, CRC: nd.CRC}
	if off < size {
		r.Data = nd.Data[off : off+min(n, size-off)]
	}
	return r
}

// readRange reads bytes [off, off+n) of the data of the format 2 record at
// recOff in r: the header, the CRCs of the blocks the range covers and
// those blocks, nothing else. It checks the header (and that it is the
// record want describes) and the CRC of every block read. The range must
// lie within the data and n be positive. A mismatch wraps ErrCorrupt; a
// short read is an IO error. It never panics.
func readRange(r io.ReaderAt, recOff int64, want header, off, n int64) ([]byte, error) {
	if want.format != formatV2 || off < 0 || n <= 0 || n > int64(want.dataLen)-off {
		return nil, fmt.Errorf("volume: range of %d bytes at %d of a format %d needle of %d bytes: %w", n, off, want.format, want.dataLen, ErrInvalid)
	}
	first, last := off/blockSize, (off+n-1)/blockSize
	tableEnd := headerSize + blockCRCSize*(last+1) // record-relative
	blocksLo := want.format.dataOffset(want.dataLen) + first*blockSize
	blocksHi := want.format.dataOffset(want.dataLen) + min((last+1)*blockSize, int64(want.dataLen))
	var meta, blocks []byte
	if blocksLo-tableEnd <= maxRangeGap {
		buf := make([]byte, blocksHi)
		if err := readFullAt(r, buf, recOff); err != nil {
			return nil, err
		}
		meta, blocks = buf[:tableEnd], buf[blocksLo:]
	} else {
		meta, blocks = make([]byte, tableEnd), make([]byte, blocksHi-blocksLo)
		if err := readFullAt(r, meta, recOff); err != nil {
			return nil, err
		}
		if err := readFullAt(r, blocks, recOff+blocksLo); err != nil {
			return nil, err
		}
	}
	h, err := decodeHeader(meta)
	if err != nil {
		return nil, err
	}
	if h.format != want.format || h.key != want.key || h.appendNs != want.appendNs || h.cookie != want.cookie ||
		h.dataLen != want.dataLen || h.dataCRC != want.dataCRC || h.flags&flagTombstone != 0 {
		return nil, fmt.Errorf("volume: record at offset %d is not needle %d of %d bytes: %w", recOff, want.key, want.dataLen, ErrCorrupt)
	}
	if err := checkBlocks(want.key, meta[headerSize+first*blockCRCSize:tableEnd], blocks, first); err != nil {
		return nil, err
	}
	in := off - first*blockSize
	return blocks[in : in+n], nil
}

// readFullAt fills b from r at off; a short read is io.ErrUnexpectedEOF.
func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	k, err := r.ReadAt(b, off)
	if k < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}
