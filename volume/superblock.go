package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Superblock layout (little-endian), at offset 0 of every volume file:
//
//	0  magic u32 "CRNV"
//	4  format version u16
//	6  collection length u8
//	7  zero
//	8  volume id u32
//	12 replication, 3 ASCII digits, then a zero byte
//	16 collection, 64 bytes, zero padded
//	80 CRC32C of bytes 0..80
//	84 zero padding to 88
//
// Records follow at offset superblockSize.
const (
	superblockMagic  = 0x564e5243 // "CRNV" on disk
	superblockSize   = 88
	maxCollectionLen = 64
)

// Volume file versions. Version 2 marks a file written whole by a binary
// that writes needle format 2 (a new volume, a vacuum, a replica copy): a
// binary that knows only format 1 refuses such a file at open instead of
// taking format 2 records for damage or for a torn tail to truncate.
// Version 1 files keep opening and taking writes (format 2 records
// included); their next vacuum rewrites them as version 2. See
// docs/storage-core.md, "Upgrading".
const (
	superblockVersion1 = 1
	superblockVersion  = 2 // what encode writes
)

// superblock identifies a volume file.
type superblock struct {
	id          uint32
	collection  string
	replication string
	version     uint16 // as read from the file; encode writes superblockVersion
}

// encode returns the superblock of a file written now (superblockVersion).
func (sb superblock) encode() []byte { return sb.encodeVersion(superblockVersion) }

func (sb superblock) encodeVersion(version uint16) []byte {
	b := make([]byte, superblockSize)
	binary.LittleEndian.PutUint32(b[0:], superblockMagic)
	binary.LittleEndian.PutUint16(b[4:], version)
	b[6] = byte(len(sb.collection))
	binary.LittleEndian.PutUint32(b[8:], sb.id)
	copy(b[12:15], sb.replication)
	copy(b[16:16+maxCollectionLen], sb.collection)
	binary.LittleEndian.PutUint32(b[80:], crc32c(b[:80]))
	return b
}

func decodeSuperblock(b []byte) (superblock, error) {
	if len(b) < superblockSize {
		return superblock{}, fmt.Errorf("volume: superblock truncated to %d bytes: %w", len(b), ErrCorrupt)
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != superblockMagic {
		return superblock{}, fmt.Errorf("volume: not a volume file (magic %#x): %w", m, ErrCorrupt)
	}
	if got, want := crc32c(b[:80]), binary.LittleEndian.Uint32(b[80:]); got != want {
		return superblock{}, fmt.Errorf("volume: superblock crc %#x, want %#x: %w", got, want, ErrCorrupt)
	}
	version := binary.LittleEndian.Uint16(b[4:])
	if version < superblockVersion1 || version > superblockVersion {
		return superblock{}, fmt.Errorf("volume: unsupported volume format version %d (this binary reads %d to %d): %w", version, superblockVersion1, superblockVersion, ErrCorrupt)
	}
	n := int(b[6])
	if n > maxCollectionLen {
		return superblock{}, fmt.Errorf("volume: superblock collection length %d: %w", n, ErrCorrupt)
	}
	sb := superblock{
		id:          binary.LittleEndian.Uint32(b[8:]),
		replication: string(b[12:15]),
		collection:  string(b[16 : 16+n]),
		version:     version,
	}
	if err := validReplication(sb.replication); err != nil {
		return superblock{}, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	if err := ValidCollection(sb.collection); err != nil {
		return superblock{}, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	if !bytes.Equal(sb.encodeVersion(version), b[:superblockSize]) {
		return superblock{}, fmt.Errorf("volume: superblock has non-zero padding: %w", ErrCorrupt)
	}
	return sb, nil
}

// ValidCollection reports whether name can be a collection: 0 to 64 ASCII
// letters, digits, '_' or '-' ("" is the default collection). The error
// wraps ErrInvalid.
func ValidCollection(name string) error {
	if len(name) > maxCollectionLen {
		return fmt.Errorf("volume: collection name %.70q longer than %d bytes: %w", name, maxCollectionLen, ErrInvalid)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("volume: collection name %q may only hold letters, digits, '_' and '-': %w", name, ErrInvalid)
		}
	}
	return nil
}

// validReplication checks a replica placement: three decimal digits.
func validReplication(r string) error {
	if len(r) != 3 || strings.Trim(r, "0123456789") != "" {
		return fmt.Errorf("volume: replication %q must be three digits like \"001\": %w", r, ErrInvalid)
	}
	return nil
}

// normReplication maps "" to "000" and validates.
func normReplication(r string) (string, error) {
	if r == "" {
		r = "000"
	}
	return r, validReplication(r)
}

// fileBase is the volume file name without extension: "<collection>_<id>",
// or "<id>" for the default collection.
func fileBase(collection string, id uint32) string {
	if collection == "" {
		return strconv.FormatUint(uint64(id), 10)
	}
	return collection + "_" + strconv.FormatUint(uint64(id), 10)
}

// parseFileBase inverts fileBase.
func parseFileBase(base string) (collection string, id uint32, ok bool) {
	idPart := base
	if i := strings.LastIndexByte(base, '_'); i >= 0 {
		collection, idPart = base[:i], base[i+1:]
		if collection == "" {
			return "", 0, false
		}
	}
	if idPart == "" || strings.Trim(idPart, "0123456789") != "" || (len(idPart) > 1 && idPart[0] == '0') {
		return "", 0, false
	}
	n, err := strconv.ParseUint(idPart, 10, 32)
	if err != nil || ValidCollection(collection) != nil {
		return "", 0, false
	}
	return collection, uint32(n), true
}
