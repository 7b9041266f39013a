package filer

import (
	"bytes"
	"strings"
	"testing"
)

// TestBatchCommitFailure: when committing the open transaction fails, the
// commands applied in it were answered but are not in the file, so every
// read and apply fails from then on instead of serving a state without
// them; restoring a snapshot gives a working state again.
func TestBatchCommitFailure(t *testing.T) {
	s := newTestState(t)
	s.ok(&Mkdir{Parent: RootIno, Name: "kept", Mode: 0o755})
	var snap bytes.Buffer
	if _, err := s.WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	s.ok(&Mkdir{Parent: RootIno, Name: "lost", Mode: 0o755})
	if !s.pending.Load() {
		t.Fatal("an applied command was committed at once")
	}
	s.wmu.Lock()
	s.w.tx.Rollback() // the commit of this transaction now fails
	s.wmu.Unlock()
	for i := range 2 {
		if _, err := s.Lookup(RootIno, "kept"); err == nil || !strings.Contains(err.Error(), "restart the filer") {
			t.Fatalf("read %d after a failed commit: %v", i, err)
		}
	}
	if _, err := s.Apply(0, &Command{Time: 1, Op: &Mkdir{Parent: RootIno, Name: "more"}}); err == nil {
		t.Fatal("apply after a failed commit succeeded")
	}
	if err := s.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(RootIno, "kept"); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	s.ok(&Mkdir{Parent: RootIno, Name: "again", Mode: 0o755})
	if _, err := s.Lookup(RootIno, "again"); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}
