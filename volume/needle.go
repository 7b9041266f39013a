package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// Record layout (little-endian). A record is the 40-byte header, the data,
// and zero padding to a multiple of 8 bytes.
const (
	recordMagic    = 0x314e5243 // "CRN1" on disk
	headerSize     = 40
	flagTombstone  = 1 << 0
	knownFlags     = flagTombstone
	offMagic       = 0
	offHeaderCRC   = 4
	offFlags       = 8
	offCookie      = 12
	offKey         = 16
	offAppendNs    = 24
	offDataLen     = 32
	offDataCRC     = 36
	recordAlign    = 8
	maxRecordBytes = headerSize + MaxNeedleSize
)

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
	// EncodeRecord computes it afresh and ignores this field.
	CRC uint32
}

// recordSize is the aligned on-disk size of a record holding dataLen bytes.
func recordSize(dataLen uint32) int64 {
	return alignUp(headerSize + int64(dataLen))
}

func alignUp(n int64) int64 { return (n + recordAlign - 1) &^ (recordAlign - 1) }

// EncodeRecord returns the full aligned on-disk record of n. A tombstone
// (n.Deleted) carries no data: n.Data is ignored. Callers check
// len(n.Data) <= MaxNeedleSize first.
func EncodeRecord(n *Needle) []byte {
	data := n.Data
	var flags byte
	if n.Deleted {
		flags |= flagTombstone
		data = nil
	}
	b := make([]byte, recordSize(uint32(len(data))))
	copy(b[headerSize:], data)
	putHeader(b, flags, n.Cookie, n.Key, n.AppendNs, uint32(len(data)), crc32c(data))
	return b
}

// putHeader fills the header of the record b, including its CRC.
func putHeader(b []byte, flags byte, cookie uint32, key, appendNs uint64, dataLen, dataCRC uint32) {
	binary.LittleEndian.PutUint32(b[offMagic:], recordMagic)
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
	flags    byte
	cookie   uint32
	key      uint64
	appendNs uint64
	dataLen  uint32
	dataCRC  uint32
}

func (h header) size() int64 { return recordSize(h.dataLen) }

// decodeHeader verifies and decodes the first headerSize bytes of b.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("volume: record header truncated to %d bytes: %w", len(b), ErrCorrupt)
	}
	if m := binary.LittleEndian.Uint32(b[offMagic:]); m != recordMagic {
		return header{}, fmt.Errorf("volume: bad record magic %#x: %w", m, ErrCorrupt)
	}
	if got, want := crc32c(b[offFlags:headerSize]), binary.LittleEndian.Uint32(b[offHeaderCRC:]); got != want {
		return header{}, fmt.Errorf("volume: record header crc %#x, want %#x: %w", got, want, ErrCorrupt)
	}
	h := header{
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

// checkData verifies the data and padding of the record b with header h.
func checkData(h header, b []byte) error {
	if int64(len(b)) < h.size() {
		return fmt.Errorf("volume: record of key %d truncated: %w", h.key, ErrCorrupt)
	}
	data := b[headerSize : headerSize+int64(h.dataLen)]
	if got := crc32c(data); got != h.dataCRC {
		return fmt.Errorf("volume: needle %d data crc %#x, want %#x: %w", h.key, got, h.dataCRC, ErrCorrupt)
	}
	return nil
}

// DecodeRecord decodes one complete record (exactly its aligned size, as
// returned by EncodeRecord), verifying magic, header CRC and data CRC. Any
// mismatch returns an error wrapping ErrCorrupt. The returned needle does not
// alias b. It never panics.
func DecodeRecord(b []byte) (*Needle, error) {
	h, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != h.size() {
		return nil, fmt.Errorf("volume: record is %d bytes, header says %d: %w", len(b), h.size(), ErrCorrupt)
	}
	if err := checkData(h, b); err != nil {
		return nil, err
	}
	for _, c := range b[headerSize+int64(h.dataLen):] {
		if c != 0 {
			return nil, fmt.Errorf("volume: record padding not zero: %w", ErrCorrupt)
		}
	}
	return &Needle{
		Key:      h.key,
		Cookie:   h.cookie,
		AppendNs: h.appendNs,
		Deleted:  h.flags&flagTombstone != 0,
		Data:     append([]byte{}, b[headerSize:headerSize+int64(h.dataLen)]...),
		CRC:      h.dataCRC,
	}, nil
}
