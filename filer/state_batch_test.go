package filer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
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

// TestSessionSeq: the sequence number of a stored session is read from
// the front of its encoding, and anything else falls back to decoding it.
func TestSessionSeq(t *testing.T) {
	for _, s := range []session{{Seq: 0}, {Seq: 1, Result: &Result{Errno: 2}}, {Seq: 1<<64 - 1, Time: 5}} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if seq, ok := sessionSeq(b); !ok || seq != s.Seq {
			t.Fatalf("%s: %d %v", b, seq, ok)
		}
	}
	for _, bad := range []string{``, `{"seq":}`, `{"seq":12`, `{"seq":-1,"result":null}`, `{"result":null,"seq":3}`, `{"seq":99999999999999999999}`} {
		if _, ok := sessionSeq([]byte(bad)); ok {
			t.Fatalf("%q read as a session", bad)
		}
	}
}

// TestBatchReadsNeverGoBack: a read that starts after a command returned
// sees it, even while a refused command rolls back and rebuilds the
// transaction that holds it.
func TestBatchReadsNeverGoBack(t *testing.T) {
	s := newTestState(t)
	var applied atomic.Int64 // directories whose mkdir returned
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			n := applied.Load()
			if n == 0 {
				continue
			}
			if _, err := s.Lookup(RootIno, fmt.Sprintf("d%d", n)); err != nil {
				errc <- fmt.Errorf("lookup of d%d after its mkdir returned: %v", n, err)
				return
			}
		}
	}()
	for i := 1; i <= 3000; i++ {
		s.ok(&Mkdir{Parent: RootIno, Name: fmt.Sprintf("d%d", i), Mode: 0o755})
		applied.Store(int64(i))
		s.fails(&Rmdir{Parent: RootIno, Name: "missing"}, syscall.ENOENT)
		if i%100 == 0 {
			select {
			case err := <-errc:
				t.Fatal(err)
			default:
			}
		}
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
