package filer

import "testing"

// A subscriber that asked to skip its own data commits gets everything
// else, and other subscribers get those commits.
func TestEventsSkipOwnDataCommits(t *testing.T) {
	h := newEventHub()
	own, cancelOwn := h.subscribe(0, nil, "mnt1")
	defer cancelOwn()
	other, cancelOther := h.subscribe(0, nil, "")
	defer cancelOther()
	ok := &Result{Inode: &Inode{Ino: 9}}
	h.publish(1, &Command{ClientID: "mnt1-3", Seq: 1, Op: &CommitSlices{Ino: 9}}, ok)
	h.publish(2, &Command{ClientID: "mnt10-1", Seq: 1, Op: &CommitSlices{Ino: 9}}, ok)
	h.publish(3, &Command{ClientID: "mnt1-3", Seq: 2, Op: &SetAttr{Ino: 9}}, ok)
	var got []uint64
	for len(own) > 0 {
		got = append(got, (<-own).Index)
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("own subscriber got events %v, want [2 3] (its data commit left out, another client's and its setattr kept)", got)
	}
	if n := len(other); n != 3 {
		t.Fatalf("other subscriber got %d events, want 3", n)
	}
}
