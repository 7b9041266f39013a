package filer

import "encoding/json"

// Client sessions (at-most-once execution) are kept per session id. A
// client retries a command for seconds, not hours, so the GC worker drops
// sessions unused for SessionTTL; otherwise the table would grow with
// every client that ever connected.

// ExpireSessions drops the sessions last used before Before (ns).
type ExpireSessions struct {
	Before int64 `json:"before"`
}

func (*ExpireSessions) OpType() string { return "expire_sessions" }

func (t *txn) expireSessions(op *ExpireSessions) *Result {
	var old [][]byte
	t.must(t.sessions.ForEach(func(k, v []byte) error {
		var s session
		t.must(json.Unmarshal(v, &s))
		if s.Time < op.Before {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	}))
	for _, k := range old {
		t.must(t.sessions.Delete(k))
	}
	return &Result{}
}

// StaleSessions counts the sessions last used before before (ns).
func (s *State) StaleSessions(before int64) (int, error) {
	n := 0
	err := s.view(func(t *txn) error {
		return t.sessions.ForEach(func(_, v []byte) error {
			var ses session
			if err := json.Unmarshal(v, &ses); err != nil {
				return err
			}
			if ses.Time < before {
				n++
			}
			return nil
		})
	})
	return n, err
}
