package filer

import (
	"strings"
	"sync"

	"github.com/cairn-storage/cairn/internal/pb"
)

// eventBuffer is how many events a slow subscriber may fall behind before
// its stream is closed (it then resubscribes and revalidates its caches).
const eventBuffer = 4096

// eventHub fans applied commands out to subscribers as change events.
// publish runs on the FSM goroutine and never blocks.
type eventHub struct {
	mu     sync.Mutex // guards subs and closed
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	root uint64
	st   *State
	ch   chan *pb.FilerEvent
	// skip is a client id whose own data commits are not sent ("": none).
	skip string
}

func newEventHub() *eventHub { return &eventHub{subs: make(map[*subscriber]struct{})} }

// subscribe returns a channel of events touching the subtree at root (0:
// everything) and a cancel function.
// Data commits (CommitSlices) of client id skip's sessions are left out.
func (h *eventHub) subscribe(root uint64, st *State, skip string) (<-chan *pb.FilerEvent, func()) {
	sub := &subscriber{root: root, st: st, ch: make(chan *pb.FilerEvent, eventBuffer), skip: skip}
	h.mu.Lock()
	if h.closed {
		close(sub.ch)
	} else {
		h.subs[sub] = struct{}{}
	}
	h.mu.Unlock()
	return sub.ch, func() {
		h.mu.Lock()
		if _, ok := h.subs[sub]; ok {
			delete(h.subs, sub)
			close(sub.ch)
		}
		h.mu.Unlock()
	}
}

// publish delivers the event of one applied command.
func (h *eventHub) publish(index uint64, c *Command, r *Result) {
	if r == nil || r.Errno != 0 {
		return
	}
	inos, dirs := touched(c, r)
	if len(inos)+len(dirs) == 0 {
		return
	}
	ev := &pb.FilerEvent{Index: index, Op: c.Op.OpType(), Inos: inos, Dirs: dirs}
	_, data := c.Op.(*CommitSlices)
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if !sub.wants(ev) || (data && sub.skip != "" && strings.HasPrefix(c.ClientID, sub.skip+"-")) {
			continue
		}
		select {
		case sub.ch <- ev:
		default: // too slow: end its stream rather than block Apply
			delete(h.subs, sub)
			close(sub.ch)
		}
	}
}

func (sub *subscriber) wants(ev *pb.FilerEvent) bool {
	if sub.root == 0 || len(ev.Dirs) == 0 {
		return true
	}
	for _, d := range ev.Dirs {
		if sub.st.IsUnder(d, sub.root) {
			return true
		}
	}
	return false
}

func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		delete(h.subs, sub)
		close(sub.ch)
	}
}

// touched returns the inodes whose attributes or data a successful command
// changed and the directories whose entries it changed.
func touched(c *Command, r *Result) (inos, dirs []uint64) {
	if r.Inode != nil {
		inos = append(inos, r.Inode.Ino)
	}
	switch op := c.Op.(type) {
	case *Mkdir:
		dirs = append(dirs, op.Parent)
	case *Create:
		dirs = append(dirs, op.Parent)
	case *Symlink:
		dirs = append(dirs, op.Parent)
	case *Link:
		inos = append(inos, op.Ino)
		dirs = append(dirs, op.NewParent)
	case *Unlink:
		dirs = append(dirs, op.Parent)
	case *Rmdir:
		dirs = append(dirs, op.Parent)
	case *Rename:
		dirs = append(dirs, op.OldParent)
		if op.NewParent != op.OldParent {
			dirs = append(dirs, op.NewParent)
		}
	case *Clone:
		dirs = append(dirs, op.DstParent)
	case *SetAttr:
		inos = append(inos, op.Ino)
	case *CommitSlices:
		inos = append(inos, op.Ino)
	case *PunchHole:
		inos = append(inos, op.Ino)
	case *Fallocate:
		inos = append(inos, op.Ino)
	case *ReplaceSlices:
		inos = append(inos, op.Ino)
	case *SetXattr:
		inos = append(inos, op.Ino)
	case *RemoveXattr:
		inos = append(inos, op.Ino)
	case *SetQuota:
		inos = append(inos, op.Ino)
	}
	return inos, dirs
}
