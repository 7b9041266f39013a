package filer

import (
	"encoding/hex"
	"encoding/json"
	bolt "go.etcd.io/bbolt"
)

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// rawUpdate changes the state file directly in a bbolt transaction of its
// own, after committing what Apply left pending.
func rawUpdate(s *State, fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	return s.db.Update(fn)
}
