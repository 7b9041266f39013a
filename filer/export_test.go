package filer

import bolt "go.etcd.io/bbolt"

// SetBeforeApply makes s run fn on its state machine's goroutine before
// each command is applied (tests only).
func SetBeforeApply(s *Server, fn func(index uint64)) { s.fsm.beforeApply.Store(&fn) }

// OverwritePieces replaces the stored pieces of file ino with ps as they
// are, unchecked, and sets the reference count of each needle they name
// to the number of pieces naming it: the damage the old piece search
// left, for repair tests. Needles no longer named keep their count.
func OverwritePieces(s *Server, ino uint64, ps []Slice) error {
	return rawUpdate(s.fsm.State(), func(tx *bolt.Tx) error {
		return catch(func() error {
			t := newTxn(tx, 0)
			for _, p := range t.fileSlices(ino) {
				t.must(t.pieces.Delete(sliceKey(ino, p.Off)))
			}
			refs := map[string]uint64{}
			for _, p := range ps {
				t.putPiece(ino, p)
				refs[p.Fid]++
			}
			for f, n := range refs {
				t.must(t.refs.Put([]byte(f), u64key(n)))
			}
			return nil
		})
	})
}

// SetRefCount sets the reference count of needle fid to n as it is (0
// removes it), unchecked: the damage a miscounted reference leaves, for
// repair tests.
func SetRefCount(s *Server, fid string, n uint64) error {
	return rawUpdate(s.fsm.State(), func(tx *bolt.Tx) error {
		return catch(func() error {
			t := newTxn(tx, 0)
			if n == 0 {
				t.must(t.refs.Delete([]byte(fid)))
				return nil
			}
			t.must(t.refs.Put([]byte(fid), u64key(n)))
			return nil
		})
	})
}
