package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
)

// Sentinel errors of the needle store. Returned errors wrap them with
// context; test with errors.Is.
var (
	// ErrNotFound: no record for this key in the volume.
	ErrNotFound = errors.New("volume: needle not found")
	// ErrDeleted: the latest record for this key is a tombstone.
	ErrDeleted = errors.New("volume: needle deleted")
	// ErrCookieMismatch: the key exists but with another cookie; treat it
	// like not found towards clients (the cookie guards against guessing).
	ErrCookieMismatch = errors.New("volume: cookie mismatch")
	// ErrCorrupt: bytes on disk fail their checksum or framing. The needle
	// must be repaired from a healthy replica (WriteRecord).
	ErrCorrupt = errors.New("volume: corrupt data")
	// ErrReadOnly: the volume rejects writes (operator request or a failed
	// fsync); the wrapping error says why.
	ErrReadOnly = errors.New("volume: read-only")
	// ErrNoSpace: the disk is full; nothing of the failed write remains and
	// the volume stays writable once space is freed.
	ErrNoSpace = errors.New("volume: no space left on device")
	// ErrTooLarge: the needle data exceeds MaxNeedleSize.
	ErrTooLarge = errors.New("volume: needle too large")
	// ErrClosed: the volume or store was closed.
	ErrClosed = errors.New("volume: closed")
	// ErrInvalid: a bad argument (collection name, replication string).
	ErrInvalid = errors.New("volume: invalid argument")
)

// MaxNeedleSize is the largest needle data accepted.
const MaxNeedleSize = 64 << 20

// Record layout (little-endian). A record is the 40-byte header, in format
// 2 a table of block CRCs, the data, and zero padding to a multiple of 8
// bytes. See docs/storage-core.md.
const (
	recordMagicV1 = 0x314e5243 // "CRN1" on disk: one CRC over the data
	recordMagicV2 = 0x324e5243 // "CRN2" on disk: and one CRC per block
	headerSize    = 40
	flagTombstone = 1 << 0
	knownFlags    = flagTombstone
	offMagic      = 0
	offHeaderCRC  = 4
	offFlags      = 8
	offCookie     = 12
	offKey        = 16
	offAppendNs   = 24
	offDataLen    = 32
	offDataCRC    = 36
	recordAlign   = 8
	// blockSize is the unit of the block CRCs of format 2: a range read
	// reads and checks the blocks it covers.
	blockSize      = 64 << 10
	blockCRCSize   = 4
	maxRecordBytes = headerSize + blockCRCSize*(MaxNeedleSize/blockSize) + MaxNeedleSize
)

// format is the version of a record, told by its magic.
type format uint8

const (
	formatV1 format = 1 // header, data: one CRC32C over the data
	formatV2 format = 2 // header, block CRC table, data
	// formatCurrent is what EncodeRecord writes.
	formatCurrent = formatV2
)

// blockCount is the number of blocks of dataLen bytes (the last may be
// short).
func blockCount(dataLen uint32) int64 { return (int64(dataLen) + blockSize - 1) / blockSize }

// dataOffset is where the data of a record of format f starts.
func (f format) dataOffset(dataLen uint32) int64 {
	if f == formatV2 {
		return headerSize + blockCRCSize*blockCount(dataLen)
	}
	return headerSize
}

func (f format) magic() uint32 {
	if f == formatV2 {
		return recordMagicV2
	}
	return recordMagicV1
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Needle is one stored blob, or a tombstone when Deleted.
type Needle struct {
	Key      uint64
	Cookie   uint32
	AppendNs uint64 // orders records of the same key: the highest wins
	Deleted  bool   // a tombstone; Data is empty
	Data     []byte
	// CRC is the CRC32C of Data, set (and verified) by DecodeRecord;
	// EncodeRecord computes it afresh, ignoring what it held, and sets it.
	CRC uint32

	// rec, when set, is a record buffer of the current format, zero outside
	// its data region, whose data region is Data (see newRecord):
	// EncodeRecord fills in the rest and returns it, instead of copying
	// Data into a new record.
	rec []byte
	// pooled, when set, is the buffer newRecord took from the record pool
	// (Data and the record built in it alias it): recycle gives it back.
	pooled []byte
}

// newRecord returns a needle whose Data, of dataLen bytes, lies in place in
// a record buffer of the current format: a request body read straight into
// Data becomes the record without being copied again. A large buffer comes
// from the record pool; the caller gives it back with recycle once nothing
// reads the needle or its record any more.
func newRecord(key uint64, cookie uint32, dataLen int) *Needle {
	f := formatCurrent
	size := recordSize(f, uint32(dataLen))
	start := f.dataOffset(uint32(dataLen))
	b, pooled := getRecordBuf(size)
	if pooled {
		// A reused buffer holds an older record: zero what the body does
		// not overwrite (header, block CRC table, padding), as a new
		// buffer would be.
		clear(b[:start])
		clear(b[start+int64(dataLen):])
	}
	n := &Needle{Key: key, Cookie: cookie, Data: b[start : start+int64(dataLen)], rec: b}
	if size >= poolMinRecord {
		n.pooled = b
	}
	return n
}

// recycle gives the needle's record buffer back to the record pool, if it
// came from there. The needle and the record built from it must not be used
// afterwards (nor be referenced by anything still running).
func (n *Needle) recycle() {
	if n.pooled == nil {
		return
	}
	putRecordBuf(n.pooled)
	n.pooled, n.rec, n.Data = nil, nil, nil
}

// Record buffers of request bodies of poolMinRecord bytes or more are kept
// for reuse, in classes of recordClass bytes (a buffer serves records of its
// class: at most recordClass bytes bigger than needed). A fresh buffer of a
// few MiB costs a clear of every byte and a page fault per page before the
// body is read into it; on the volume server's write path, receiving the
// mount's 4 MiB needles, that was about a tenth of its CPU time.
const (
	poolMinRecord = 256 << 10
	recordClass   = 64 << 10
)

// recordPools holds the pooled buffers by class: class i has capacity
// (i+1)*recordClass.
var recordPools [(maxRecordBytes + recordClass - 1) / recordClass]sync.Pool

// getRecordBuf returns a buffer of size bytes and whether it was reused (its
// bytes are then whatever the last user left).
func getRecordBuf(size int64) ([]byte, bool) {
	if size < poolMinRecord {
		return make([]byte, size), false
	}
	c := (size - 1) / recordClass
	if p, ok := recordPools[c].Get().(*[]byte); ok {
		return (*p)[:size], true
	}
	return make([]byte, size, (c+1)*recordClass), false
}

// putRecordBuf gives back a buffer from getRecordBuf.
func putRecordBuf(b []byte) {
	c := int64(cap(b))
	if c < poolMinRecord || c%recordClass != 0 {
		return
	}
	b = b[:0]
	recordPools[c/recordClass-1].Put(&b)
}

// trim shortens the data of a needle from newRecord to its first n bytes
// (a body shorter than announced), dropping the record buffer when the
// layout no longer fits it.
func (n *Needle) trim(k int) {
	if k == len(n.Data) {
		return
	}
	n.Data = n.Data[:k]
	n.rec = nil // pooled stays: Data still lies in it
}

// recordSize is the aligned on-disk size of a record of format f holding
// dataLen bytes.
func recordSize(f format, dataLen uint32) int64 {
	return alignUp(f.dataOffset(dataLen) + int64(dataLen))
}

func alignUp(n int64) int64 { return (n + recordAlign - 1) &^ (recordAlign - 1) }

// EncodeRecord returns the full aligned on-disk record of n in the current
// format. A tombstone (n.Deleted) carries no data: n.Data is ignored.
// Callers check len(n.Data) <= MaxNeedleSize first.
func EncodeRecord(n *Needle) []byte { return encodeRecord(n, formatCurrent) }

// encodeRecord returns the record of n in format f (tests write format 1
// to check that old volume files keep reading).
func encodeRecord(n *Needle, f format) []byte {
	data := n.Data
	var flags byte
	if n.Deleted {
		flags |= flagTombstone
		data = nil
	}
	dlen := uint32(len(data))
	start := f.dataOffset(dlen)
	b := n.rec
	if b == nil || dlen == 0 || f != formatCurrent || n.Deleted || int64(len(b)) != recordSize(f, dlen) || &b[start] != &data[0] {
		b = make([]byte, recordSize(f, dlen))
		copy(b[start:], data)
	}
	n.rec = nil // sealed: the buffer is the record now
	var crc uint32
	if f == formatV2 {
		table := b[headerSize:start]
		for i := range blockCount(dlen) {
			blk := data[i*blockSize : min(int64(dlen), (i+1)*blockSize)]
			binary.LittleEndian.PutUint32(table[i*blockCRCSize:], crc32c(blk))
		}
		crc = wholeCRC(tableEntry(table), dlen) // one pass over the data
	} else {
		crc = crc32c(data)
	}
	putHeader(b, f, flags, n.Cookie, n.Key, n.AppendNs, dlen, crc)
	n.CRC = crc
	return b
}

// putHeader fills the header of the record b, including its CRC.
func putHeader(b []byte, f format, flags byte, cookie uint32, key, appendNs uint64, dataLen, dataCRC uint32) {
	binary.LittleEndian.PutUint32(b[offMagic:], f.magic())
	b[offFlags] = flags
	b[offFlags+1], b[offFlags+2], b[offFlags+3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[offCookie:], cookie)
	binary.LittleEndian.PutUint64(b[offKey:], key)
	binary.LittleEndian.PutUint64(b[offAppendNs:], appendNs)
	binary.LittleEndian.PutUint32(b[offDataLen:], dataLen)
	binary.LittleEndian.PutUint32(b[offDataCRC:], dataCRC)
	binary.LittleEndian.PutUint32(b[offHeaderCRC:], crc32c(b[offFlags:headerSize]))
}

// header is a decoded record header.
type header struct {
	format   format
	flags    byte
	cookie   uint32
	key      uint64
	appendNs uint64
	dataLen  uint32
	dataCRC  uint32
}

func (h header) size() int64 { return recordSize(h.format, h.dataLen) }

// decodeHeader verifies and decodes the first headerSize bytes of b.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("volume: record header truncated to %d bytes: %w", len(b), ErrCorrupt)
	}
	var f format
	switch m := binary.LittleEndian.Uint32(b[offMagic:]); m {
	case recordMagicV1:
		f = formatV1
	case recordMagicV2:
		f = formatV2
	default:
		return header{}, fmt.Errorf("volume: bad record magic %#x: %w", m, ErrCorrupt)
	}
	if got, want := crc32c(b[offFlags:headerSize]), binary.LittleEndian.Uint32(b[offHeaderCRC:]); got != want {
		return header{}, fmt.Errorf("volume: record header crc %#x, want %#x: %w", got, want, ErrCorrupt)
	}
	h := header{
		format:   f,
		flags:    b[offFlags],
		cookie:   binary.LittleEndian.Uint32(b[offCookie:]),
		key:      binary.LittleEndian.Uint64(b[offKey:]),
		appendNs: binary.LittleEndian.Uint64(b[offAppendNs:]),
		dataLen:  binary.LittleEndian.Uint32(b[offDataLen:]),
		dataCRC:  binary.LittleEndian.Uint32(b[offDataCRC:]),
	}
	if h.flags&^knownFlags != 0 || b[offFlags+1]|b[offFlags+2]|b[offFlags+3] != 0 {
		return header{}, fmt.Errorf("volume: record has unknown flags %#x: %w", h.flags, ErrCorrupt)
	}
	if h.dataLen > MaxNeedleSize {
		return header{}, fmt.Errorf("volume: record data length %d exceeds %d: %w", h.dataLen, MaxNeedleSize, ErrCorrupt)
	}
	if h.flags&flagTombstone != 0 && h.dataLen != 0 {
		return header{}, fmt.Errorf("volume: tombstone with %d data bytes: %w", h.dataLen, ErrCorrupt)
	}
	return h, nil
}

// checkData verifies the data (and in format 2 every block CRC) of the
// record b with header h.
func checkData(h header, b []byte) error {
	if int64(len(b)) < h.size() {
		return fmt.Errorf("volume: record of key %d truncated: %w", h.key, ErrCorrupt)
	}
	start := h.format.dataOffset(h.dataLen)
	data := b[start : start+int64(h.dataLen)]
	var got uint32
	if h.format == formatV2 {
		// Every block matches its CRC, and the block CRCs combine to the
		// whole-data CRC: the data is what was written, read once.
		table := b[headerSize:start]
		if err := checkBlocks(h.key, table, data, 0); err != nil {
			return err
		}
		got = wholeCRC(tableEntry(table), h.dataLen)
	} else {
		got = crc32c(data)
	}
	if got != h.dataCRC {
		return fmt.Errorf("volume: needle %d data crc %#x, want %#x: %w", h.key, got, h.dataCRC, ErrCorrupt)
	}
	return nil
}

// tableEntry returns the entries of a block CRC table.
func tableEntry(table []byte) func(i int64) uint32 {
	return func(i int64) uint32 { return binary.LittleEndian.Uint32(table[i*blockCRCSize:]) }
}

// checkBlocks verifies blocks first, first+1, ... of needle key: data holds
// them back to back (the last may be short) and table their CRCs.
func checkBlocks(key uint64, table, data []byte, first int64) error {
	for i := int64(0); int64(len(data)) > i*blockSize; i++ {
		blk := data[i*blockSize : min(int64(len(data)), (i+1)*blockSize)]
		want := binary.LittleEndian.Uint32(table[i*blockCRCSize:])
		if got := crc32c(blk); got != want {
			return fmt.Errorf("volume: needle %d block %d (bytes %d-%d) crc %#x, want %#x: %w",
				key, first+i, (first+i)*blockSize, (first+i)*blockSize+int64(len(blk))-1, got, want, ErrCorrupt)
		}
	}
	return nil
}

// DecodeRecord decodes one complete record of either format (exactly its
// aligned size, as returned by EncodeRecord), verifying magic, header CRC,
// block CRCs and data CRC. Any mismatch returns an error wrapping
// ErrCorrupt. The returned needle does not alias b. It never panics.
func DecodeRecord(b []byte) (*Needle, error) {
	h, err := verifyRecord(b)
	if err != nil {
		return nil, err
	}
	start := h.format.dataOffset(h.dataLen)
	return &Needle{
		Key:      h.key,
		Cookie:   h.cookie,
		AppendNs: h.appendNs,
		Deleted:  h.flags&flagTombstone != 0,
		Data:     append([]byte{}, b[start:start+int64(h.dataLen)]...),
		CRC:      h.dataCRC,
	}, nil
}

// verifyRecord checks b as DecodeRecord does, without copying the data
// out, and returns its header.
func verifyRecord(b []byte) (header, error) {
	h, err := decodeHeader(b)
	if err != nil {
		return header{}, err
	}
	if int64(len(b)) != h.size() {
		return header{}, fmt.Errorf("volume: record is %d bytes, header says %d: %w", len(b), h.size(), ErrCorrupt)
	}
	if err := checkData(h, b); err != nil {
		return header{}, err
	}
	for _, c := range b[h.format.dataOffset(h.dataLen)+int64(h.dataLen):] {
		if c != 0 {
			return header{}, fmt.Errorf("volume: record padding not zero: %w", ErrCorrupt)
		}
	}
	return h, nil
}
