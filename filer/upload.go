package filer

import (
	"encoding/binary"
	"syscall"
)

// Uploads in flight. A writer (the HTTP API, a mount) registers the file
// ids it is about to upload with BeginUpload before it stores the needles,
// and references them with CommitSlices afterwards. If the writer dies in
// between, the needles are on volume servers but referenced by nothing;
// ExpireUploads, applied by the GC worker with the leader's clock, moves
// such ids to the delete queue once their lease has run out. So a crash at
// any point of a write leaks no needle.

// BeginUpload leases Fids as uploads in flight until Expires (ns). A fid
// already referenced or queued for deletion is refused with EINVAL.
type BeginUpload struct {
	Fids    []string `json:"fids"`
	Expires int64    `json:"expires"`
}

// ExpireUploads queues for deletion every upload whose lease ended before
// Before (ns) and that nothing references.
type ExpireUploads struct {
	Before int64 `json:"before"`
}

func (*BeginUpload) OpType() string   { return "begin_upload" }
func (*ExpireUploads) OpType() string { return "expire_uploads" }

func (t *txn) beginUpload(op *BeginUpload) *Result {
	for _, f := range op.Fids {
		if e := validateSlice(Slice{Len: 1, Fid: f}); e != 0 || f == "" || isInlineFid(f) {
			return errnoResult(syscall.EINVAL)
		}
		if t.refs.Get([]byte(f)) != nil || t.deleteq.Get([]byte(f)) != nil {
			return errnoResult(syscall.EINVAL)
		}
	}
	for _, f := range op.Fids {
		t.must(t.uploads.Put([]byte(f), u64key(uint64(op.Expires))))
	}
	return &Result{}
}

func (t *txn) expireUploads(op *ExpireUploads) *Result {
	var expired [][]byte
	t.must(t.uploads.ForEach(func(k, v []byte) error {
		if int64(binary.BigEndian.Uint64(v)) < op.Before {
			expired = append(expired, append([]byte(nil), k...))
		}
		return nil
	}))
	for _, k := range expired {
		t.must(t.uploads.Delete(k))
		t.must(t.deleteq.Put(k, []byte{}))
	}
	return &Result{}
}

// ExpiredUploads returns how many uploads' leases ended before now (ns).
func (s *State) ExpiredUploads(now int64) (int, error) {
	n := 0
	err := s.view(func(t *txn) error {
		return t.uploads.ForEach(func(_, v []byte) error {
			if int64(binary.BigEndian.Uint64(v)) < now {
				n++
			}
			return nil
		})
	})
	return n, err
}

// Referenced returns every fid referenced by any inode, in fid order.
func (s *State) Referenced() ([]string, error) {
	var out []string
	err := s.view(func(t *txn) error {
		return t.refs.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Upload is one upload in flight: a leased file id and when its lease ends.
type Upload struct {
	Fid     string `json:"fid"`
	Expires int64  `json:"expires"` // ns
}

// Uploads returns every upload in flight, in fid order. volume.fsck reads
// it so that needles being written are not taken for orphans.
func (s *State) Uploads() ([]Upload, error) {
	var out []Upload
	err := s.view(func(t *txn) error {
		return t.uploads.ForEach(func(k, v []byte) error {
			out = append(out, Upload{Fid: string(k), Expires: int64(binary.BigEndian.Uint64(v))})
			return nil
		})
	})
	return out, err
}
