package filer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-storage/cairn/internal/fid"
)

// Inline data. A small write committed with an fsync costs two durable
// steps in series when its bytes go to a volume server first (the needle's
// fdatasync, then the Raft log's fsync for the CommitSlices that references
// it). A CommitSlices may instead carry the bytes of small slices itself
// (Slice.Data): Apply stores them in the state, under a file id of volume 0
// (fid.InlineVolume, which no volume server has), and the slice references
// that id like any needle. The Raft log entry is then the only durable
// step. Such a blob is counted in refs like a needle and is deleted in the
// same Apply that drops its last reference (there is nothing on a volume
// server to delete). Reads ask the filer (the "inline" read). The
// compactor rewrites a file's inline data into needles once the file is
// quiet, so the filer holds only recent small writes.

// Bounds of inline data in one CommitSlices: a larger write is cheaper as
// a needle than as bytes in the Raft log of every filer.
const (
	MaxInlineBytes  = 128 << 10 // total bytes of inline data in one command
	MaxInlineSlices = 64        // inline slices in one command
)

var (
	bucketInline   = []byte("inline") // inline fid -> CRC32C (4 bytes, big endian) + data
	metaNextInline = []byte("next_inline")
	// The count and bytes of the blobs held, kept by the Apply that stores
	// or drops one, so that the metric costs two reads, not a scan.
	metaInlineCount = []byte("inline_count")
	metaInlineBytes = []byte("inline_bytes")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storeInline stores data as a new inline blob and returns its fid. The
// key comes from a counter in the state, so every member names it alike.
func (t *txn) storeInline(data []byte) string {
	n := max(t.metaU64(metaNextInline), 1) // the first blob is 1
	t.must(t.meta.Put(metaNextInline, u64key(n+1)))
	id := fid.FileID{Volume: fid.InlineVolume, Key: n}.String()
	v := make([]byte, 4+len(data))
	binary.BigEndian.PutUint32(v, crc32.Checksum(data, castagnoli))
	copy(v[4:], data)
	t.must(t.inline.Put([]byte(id), v))
	t.addInlineUsage(1, int64(len(data)))
	return id
}

// dropInline deletes inline blob k, whose last reference is gone.
func (t *txn) dropInline(k []byte) {
	if v := t.inline.Get(k); v != nil {
		t.addInlineUsage(-1, -int64(len(v)-4))
	}
	t.must(t.inline.Delete(k))
}

// addInlineUsage changes the count and bytes of inline blobs held.
func (t *txn) addInlineUsage(count, bytes int64) {
	t.must(t.meta.Put(metaInlineCount, u64key(uint64(int64(t.metaU64(metaInlineCount))+count))))
	t.must(t.meta.Put(metaInlineBytes, u64key(uint64(int64(t.metaU64(metaInlineBytes))+bytes))))
}

// inlineUsage returns the count and bytes of inline blobs held, as kept.
func (t *txn) inlineUsage() (count, bytes uint64) {
	return t.metaU64(metaInlineCount), t.metaU64(metaInlineBytes)
}

// scanInline counts the inline blobs held, one step per blob.
func (t *txn) scanInline() (count, bytes uint64) {
	t.must(t.inline.ForEach(func(_, v []byte) error {
		count++
		bytes += uint64(len(v) - 4)
		return nil
	}))
	return count, bytes
}

// countInline stores the count and bytes of the inline blobs held, from a
// scan, when the state is opened or restored: a version that did not keep
// them may have written the state (made it, or changed it after a
// downgrade), and every member computes the same from the same state.
func countInline(tx *bolt.Tx) error {
	return catch(func() error {
		t := newTxn(tx, 0)
		count, bytes := t.scanInline()
		if kc, kb := t.inlineUsage(); kc == count && kb == bytes && t.meta.Get(metaInlineBytes) != nil {
			return nil
		}
		t.must(t.meta.Put(metaInlineCount, u64key(count)))
		t.must(t.meta.Put(metaInlineBytes, u64key(bytes)))
		return nil
	})
}

// checkInline checks the inline writes of a CommitSlices and returns them
// as slices without fids.
func checkInline(inl []InlineData) ([]Slice, syscall.Errno) {
	if len(inl) > MaxInlineSlices {
		return nil, syscall.E2BIG
	}
	total := 0
	out := make([]Slice, 0, len(inl))
	for _, d := range inl {
		s := Slice{Off: d.Off, Len: uint64(len(d.Data))}
		if e := validateSlice(s); e != 0 {
			return nil, e
		}
		if total += len(d.Data); total > MaxInlineBytes {
			return nil, syscall.E2BIG
		}
		out = append(out, s)
	}
	return out, 0
}

// storeInlineSlices stores the inline writes (checked by checkInline) as
// blobs and returns sl followed by a slice naming each, and their fids.
func (t *txn) storeInlineSlices(sl []Slice, inl []InlineData) ([]Slice, []string) {
	if len(inl) == 0 {
		return sl, nil
	}
	out := append(make([]Slice, 0, len(sl)+len(inl)), sl...)
	fids := make([]string, 0, len(inl))
	for _, d := range inl {
		f := t.storeInline(d.Data)
		out = append(out, Slice{Off: d.Off, Len: uint64(len(d.Data)), Fid: f})
		fids = append(fids, f)
	}
	return out, fids
}

// checkRef refuses a slice naming an inline fid that holds nothing (or a
// needle on the delete queue): only Apply makes inline fids, and a
// reference to one must name a stored blob.
func (t *txn) checkRef(s Slice) syscall.Errno {
	switch {
	case s.Fid == "":
		return 0
	case t.deleteq.Get([]byte(s.Fid)) != nil:
		return syscall.ESTALE
	}
	if id, err := fid.Parse(s.Fid); err == nil && id.Inline() {
		v := t.inline.Get([]byte(s.Fid))
		if v == nil || s.NeedleOff+s.Len > uint64(len(v)-4) {
			return syscall.EINVAL
		}
	}
	return 0
}

// isInlineFid reports whether s parses as a file id of inline data, in
// any of the spellings fid.Parse accepts.
func isInlineFid(s string) bool {
	id, err := fid.Parse(s)
	return err == nil && id.Inline()
}

// checkInlineBlobs verifies the inline blobs against the references counted
// from the pieces: each blob is referenced and intact, each referenced
// inline fid has its blob, and no inline fid is queued for deletion.
func (t *txn) checkInlineBlobs(refs map[string]uint64) []error {
	var errs []error
	var count, bytes uint64
	t.must(t.inline.ForEach(func(k, v []byte) error {
		count++
		bytes += uint64(len(v) - 4)
		switch {
		case refs[string(k)] == 0:
			errs = append(errs, fmt.Errorf("inline data %s is referenced by no file", k))
		case len(v) < 4 || crc32.Checksum(v[4:], castagnoli) != binary.BigEndian.Uint32(v):
			errs = append(errs, fmt.Errorf("inline data %s fails its checksum", k))
		}
		return nil
	}))
	for f := range refs {
		if fid.IsInline(f) && t.inline.Get([]byte(f)) == nil {
			errs = append(errs, fmt.Errorf("inline data %s is referenced but missing", f))
		}
	}
	if kc, kb := t.inlineUsage(); kc != count || kb != bytes {
		errs = append(errs, fmt.Errorf("inline data kept as %d blobs of %d bytes, but %d blobs of %d bytes are held", kc, kb, count, bytes))
	}
	t.must(t.deleteq.ForEach(func(k, _ []byte) error {
		if isInlineFid(string(k)) {
			errs = append(errs, fmt.Errorf("inline data %s is on the needle delete queue", k))
		}
		return nil
	}))
	return errs
}

// ReadInline returns up to n bytes of inline blob id at off (fewer at its
// end), after checking the blob's CRC32C. ENOENT: no such blob (never
// made, or dropped since).
func (s *State) ReadInline(id string, off, n uint64) ([]byte, error) {
	var out []byte
	err := s.view(func(t *txn) error {
		v := t.inline.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("filer: no inline data %q: %w", id, syscall.ENOENT)
		}
		data := v[4:]
		if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(v) {
			return fmt.Errorf("%w: inline data %s fails its checksum", ErrCorrupt, id)
		}
		if off < uint64(len(data)) {
			data = data[off:]
			out = append([]byte{}, data[:min(uint64(len(data)), n)]...)
		}
		return nil
	})
	return out, err
}

// InlineUsage returns the count and bytes of inline blobs held, in
// constant time.
func (s *State) InlineUsage() (count, bytes uint64, err error) {
	err = s.view(func(t *txn) error {
		count, bytes = t.inlineUsage()
		return nil
	})
	return count, bytes, err
}
