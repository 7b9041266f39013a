package volume

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// load verifies the superblock against want (an empty replication accepts
// any) and rebuilds the index by scanning every record. See OpenVolume for
// the recovery rules.
func (v *Volume) load(want superblock) error {
	f := v.mu.file
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("volume: size of %s: %w", v.path(extData), err)
	}
	sc := &scanner{f: f, size: size}
	b, err := sc.at(0, superblockSize)
	if err != nil {
		return fmt.Errorf("volume: %s has no complete superblock (%d bytes): %w", v.path(extData), size, ErrCorrupt)
	}
	sb, err := decodeSuperblock(b)
	if err != nil {
		return fmt.Errorf("volume: superblock of %s: %w", v.path(extData), err)
	}
	if sb.id != want.id || sb.collection != want.collection || (want.replication != "" && sb.replication != want.replication) {
		return fmt.Errorf("volume: %s holds volume %d collection %q replication %s, not volume %d collection %q replication %s: %w",
			v.path(extData), sb.id, sb.collection, sb.replication, want.id, want.collection, want.replication, ErrInvalid)
	}
	v.sb = sb

	off := int64(superblockSize)
	for off < size {
		h, rec, err := sc.record(off)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("volume: read %s at offset %d: %w", v.path(extData), off, err)
		}
		if err == nil {
			corrupt := checkData(h, rec) != nil
			if corrupt {
				v.log.Error("needle failed its checksum; it reads as corrupt until repaired from a replica", "key", h.key, "offset", off)
			}
			v.applyLocked(h.key, entry{off: off, format: h.format, dataLen: h.dataLen, cookie: h.cookie, appendNs: h.appendNs,
				crc: h.dataCRC, deleted: h.flags&flagTombstone != 0, corrupt: corrupt})
			v.mu.lastNs = max(v.mu.lastNs, h.appendNs)
			off += h.size()
			continue
		}
		next, found, ferr := sc.findValid(off + recordAlign)
		if ferr != nil {
			return fmt.Errorf("volume: scan %s: %w", v.path(extData), ferr)
		}
		if found {
			v.log.Error("skipped a damaged region in the middle of a volume file; needles in it need repair from a replica",
				"file", v.path(extData), "from", off, "to", next, "bytes", next-off, "cause", err)
			v.mu.damaged += uint64(next - off)
			off = next
			continue
		}
		// Torn tail: nothing valid follows; an interrupted append.
		v.log.Warn("truncating the torn tail of a volume file (an append interrupted by a crash)",
			"file", v.path(extData), "offset", off, "bytes", size-off, "cause", err)
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("volume: truncate torn tail of %s at %d: %w", v.path(extData), off, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("volume: sync %s after truncating its torn tail: %w", v.path(extData), err)
		}
		size = off
	}
	v.mu.size = size
	return nil
}

// scanner reads a volume file sequentially through a window buffer.
type scanner struct {
	f      vfs.File
	size   int64
	buf    []byte
	bufOff int64
}

const scanWindow = 1 << 20

// errBeyondEOF: a read past the end of the scanned file (framing, not IO).
var errBeyondEOF = errors.New("volume: beyond end of file")

// at returns n bytes at off, valid until the next call.
func (s *scanner) at(off int64, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > s.size {
		return nil, errBeyondEOF
	}
	if off >= s.bufOff && off+n <= s.bufOff+int64(len(s.buf)) {
		return s.buf[off-s.bufOff : off-s.bufOff+n], nil
	}
	want := min(max(n, scanWindow), s.size-off)
	if int64(cap(s.buf)) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	got, err := s.f.ReadAt(s.buf, off)
	if int64(got) < want {
		s.buf = s.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	s.bufOff = off
	return s.buf[:n], nil
}

// record returns the header and full record at off if the header is valid
// and the record lies within the file. The data CRC is not checked.
func (s *scanner) record(off int64) (header, []byte, error) {
	hb, err := s.at(off, headerSize)
	if errors.Is(err, errBeyondEOF) {
		return header{}, nil, fmt.Errorf("volume: record header at %d beyond end of file: %w", off, ErrCorrupt)
	}
	if err != nil {
		return header{}, nil, err
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return header{}, nil, err
	}
	rec, err := s.at(off, h.size())
	if err != nil && !errors.Is(err, errBeyondEOF) {
		return header{}, nil, err
	}
	if err != nil {
		return header{}, nil, fmt.Errorf("volume: record at %d of %d bytes extends beyond end of file %d: %w", off, h.size(), s.size, ErrCorrupt)
	}
	return h, rec, nil
}

// findValid returns the first aligned offset at or after from holding a
// fully valid record (header and data CRC).
func (s *scanner) findValid(from int64) (int64, bool, error) {
	for off := alignUp(from); off+headerSize <= s.size; off += recordAlign {
		h, rec, err := s.record(off)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return 0, false, err
		}
		if err != nil {
			continue
		}
		if checkData(h, rec) == nil {
			return off, true, nil
		}
	}
	return 0, false, nil
}
