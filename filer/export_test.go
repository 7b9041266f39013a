package filer

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// SetBeforeApply makes s run fn on its state machine's goroutine before
// each command is applied (tests only).
func SetBeforeApply(s *Server, fn func(index uint64)) { s.fsm.beforeApply.Store(&fn) }

// OverwritePieces replaces the stored pieces of file ino with ps as they
// are, unchecked, and sets the reference count of each needle they name
// to the number of pieces naming it: the damage the old piece search
// left, for repair tests. Needles no longer named keep their count.
func OverwritePieces(s *Server, ino uint64, ps []Slice) error {
	return rawUpdate(s.fsm.State(), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSlices)
		var old [][]byte
		c := b.Cursor()
		prefix := u64key(ino)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		refs := map[string]uint64{}
		for _, p := range ps {
			if err := b.Put(sliceKey(ino, p.Off), encodePiece(p)); err != nil {
				return err
			}
			refs[p.Fid]++
		}
		for f, n := range refs {
			if err := tx.Bucket(bucketRefs).Put([]byte(f), u64key(n)); err != nil {
				return err
			}
		}
		return nil
	})
}
