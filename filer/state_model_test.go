package filer

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mnode is an inode of the in-memory POSIX model.
type mnode struct {
	ino     uint64
	typ     uint32
	nlink   uint32
	parent  uint64
	entries map[string]uint64
	data    []uint64 // per byte: 0 zero, else write id<<32 | offset in needle
	target  string
	xattrs  map[string]string
	orphan  bool
}

// model is a plain in-memory POSIX namespace, written for clarity, that
// the State must agree with: same errnos, same tree, same bytes.
type model struct {
	nodes map[uint64]*mnode
	next  uint64
}

func newModel() *model {
	root := &mnode{ino: RootIno, typ: syscall.S_IFDIR, nlink: 2, parent: RootIno, entries: map[string]uint64{}, xattrs: map[string]string{}}
	return &model{nodes: map[uint64]*mnode{RootIno: root}, next: RootIno + 1}
}

func (m *model) dir(ino uint64) (*mnode, syscall.Errno) {
	d := m.nodes[ino]
	if d == nil {
		return nil, syscall.ENOENT
	}
	if d.typ != syscall.S_IFDIR {
		return nil, syscall.ENOTDIR
	}
	return d, 0
}

func (m *model) add(p *mnode, name string, typ uint32) *mnode {
	n := &mnode{ino: m.next, typ: typ, nlink: 1, xattrs: map[string]string{}}
	m.next++
	if typ == syscall.S_IFDIR {
		n.nlink, n.parent, n.entries = 2, p.ino, map[string]uint64{}
		p.nlink++
	}
	m.nodes[n.ino] = n
	p.entries[name] = n.ino
	return n
}

func (m *model) prepCreate(parent uint64, name string) (*mnode, syscall.Errno) {
	if e := ValidateName(name); e != 0 {
		return nil, e
	}
	p, e := m.dir(parent)
	if e != 0 {
		return nil, e
	}
	if _, ok := p.entries[name]; ok {
		return nil, syscall.EEXIST
	}
	return p, 0
}

func (m *model) mkdir(parent uint64, name string) syscall.Errno {
	p, e := m.prepCreate(parent, name)
	if e == 0 {
		m.add(p, name, syscall.S_IFDIR)
	}
	return e
}

func (m *model) create(parent uint64, name string, excl bool) syscall.Errno {
	if e := ValidateName(name); e != 0 {
		return e
	}
	p, e := m.dir(parent)
	if e != 0 {
		return e
	}
	if ino, ok := p.entries[name]; ok {
		switch {
		case excl:
			return syscall.EEXIST
		case m.nodes[ino].typ == syscall.S_IFDIR:
			return syscall.EISDIR
		}
		return 0
	}
	m.add(p, name, syscall.S_IFREG)
	return 0
}

func (m *model) symlink(parent uint64, name, target string) syscall.Errno {
	p, e := m.prepCreate(parent, name)
	if e == 0 {
		m.add(p, name, syscall.S_IFLNK).target = target
	}
	return e
}

func (m *model) link(ino, parent uint64, name string) syscall.Errno {
	if e := ValidateName(name); e != 0 {
		return e
	}
	n := m.nodes[ino]
	if n == nil || n.nlink == 0 {
		return syscall.ENOENT
	}
	p, e := m.dir(parent)
	switch {
	case e != 0:
		return e
	case p.entries[name] != 0:
		return syscall.EEXIST
	case n.typ == syscall.S_IFDIR:
		return syscall.EPERM
	}
	n.nlink++
	p.entries[name] = ino
	return 0
}

func (m *model) entry(parent uint64, name string) (*mnode, *mnode, syscall.Errno) {
	if e := ValidateName(name); e != 0 {
		return nil, nil, e
	}
	p, e := m.dir(parent)
	if e != 0 {
		return nil, nil, e
	}
	ino, ok := p.entries[name]
	if !ok {
		return nil, nil, syscall.ENOENT
	}
	return p, m.nodes[ino], 0
}

func (m *model) dropLink(n *mnode, keep bool) {
	n.nlink--
	if n.nlink == 0 {
		if keep && n.typ == syscall.S_IFREG {
			n.orphan = true
		} else {
			delete(m.nodes, n.ino)
		}
	}
}

func (m *model) unlink(parent uint64, name string, keep bool) syscall.Errno {
	p, n, e := m.entry(parent, name)
	switch {
	case e != 0:
		return e
	case n.typ == syscall.S_IFDIR:
		return syscall.EISDIR
	}
	delete(p.entries, name)
	m.dropLink(n, keep)
	return 0
}

func (m *model) rmdir(parent uint64, name string) syscall.Errno {
	p, n, e := m.entry(parent, name)
	switch {
	case e != 0:
		return e
	case n.typ != syscall.S_IFDIR:
		return syscall.ENOTDIR
	case len(n.entries) > 0:
		return syscall.ENOTEMPTY
	}
	delete(p.entries, name)
	p.nlink--
	delete(m.nodes, n.ino)
	return 0
}

// under reports whether directory ino is anc or below it.
func (m *model) under(ino, anc uint64) bool {
	for {
		if ino == anc {
			return true
		}
		if ino == RootIno {
			return false
		}
		ino = m.nodes[ino].parent
	}
}

func (m *model) rename(oldP uint64, oldN string, newP uint64, newN string, flags uint32) syscall.Errno {
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return syscall.EINVAL
	}
	for _, n := range []string{oldN, newN} {
		if e := ValidateName(n); e != 0 {
			return e
		}
	}
	op, e := m.dir(oldP)
	if e != 0 {
		return e
	}
	np, e := m.dir(newP)
	if e != 0 {
		return e
	}
	srcIno, ok := op.entries[oldN]
	if !ok {
		return syscall.ENOENT
	}
	dstIno, exists := np.entries[newN]
	exchange := flags&RenameExchange != 0
	switch {
	case flags&RenameNoReplace != 0 && exists:
		return syscall.EEXIST
	case exchange && !exists:
		return syscall.ENOENT
	}
	src, dst := m.nodes[srcIno], m.nodes[dstIno]
	isDir := func(n *mnode) bool { return n != nil && n.typ == syscall.S_IFDIR }
	if isDir(src) && m.under(np.ino, src.ino) {
		return syscall.EINVAL
	}
	if isDir(dst) && m.under(op.ino, dst.ino) {
		if exchange {
			return syscall.EINVAL
		}
		return syscall.ENOTEMPTY
	}
	if srcIno == dstIno {
		return 0
	}
	move := func(n, from, to *mnode) {
		if isDir(n) && from != to {
			from.nlink--
			to.nlink++
			n.parent = to.ino
		}
	}
	if exchange {
		op.entries[oldN], np.entries[newN] = dstIno, srcIno
		move(src, op, np)
		move(dst, np, op)
		return 0
	}
	if dst != nil {
		switch {
		case isDir(src) && !isDir(dst):
			return syscall.ENOTDIR
		case !isDir(src) && isDir(dst):
			return syscall.EISDIR
		case isDir(dst) && len(dst.entries) > 0:
			return syscall.ENOTEMPTY
		}
		if isDir(dst) {
			np.nlink--
			delete(m.nodes, dst.ino)
		} else {
			m.dropLink(dst, false)
		}
	}
	delete(op.entries, oldN)
	np.entries[newN] = srcIno
	move(src, op, np)
	return 0
}

func (m *model) regular(ino uint64) (*mnode, syscall.Errno) {
	n := m.nodes[ino]
	switch {
	case n == nil:
		return nil, syscall.ENOENT
	case n.typ == syscall.S_IFDIR:
		return nil, syscall.EISDIR
	case n.typ != syscall.S_IFREG:
		return nil, syscall.EINVAL
	}
	return n, 0
}

func (m *model) truncate(ino uint64, size uint64) syscall.Errno {
	n, e := m.regular(ino)
	if e == 0 {
		n.data = resizeBytes(n.data, size)
	}
	return e
}

func resizeBytes(b []uint64, size uint64) []uint64 {
	if size <= uint64(len(b)) {
		return b[:size]
	}
	return append(b, make([]uint64, size-uint64(len(b)))...)
}

func (m *model) write(ino uint64, s Slice, id uint64) syscall.Errno {
	n, e := m.regular(ino)
	if e == 0 {
		if uint64(len(n.data)) < s.end() {
			n.data = resizeBytes(n.data, s.end())
		}
		for i := range s.Len {
			n.data[s.Off+i] = id<<32 | (s.NeedleOff + i)
		}
	}
	return e
}

func (m *model) punch(ino, off, length uint64) syscall.Errno {
	n, e := m.regular(ino)
	switch {
	case e != 0:
		return e
	case length == 0:
		return syscall.EINVAL
	}
	for i := off; i < off+length && i < uint64(len(n.data)); i++ {
		n.data[i] = 0
	}
	return 0
}

func (m *model) setXattr(ino uint64, name, val string, flags uint32) syscall.Errno {
	n := m.nodes[ino]
	if n == nil {
		return syscall.ENOENT
	}
	_, exists := n.xattrs[name]
	switch {
	case flags == XattrCreate && exists:
		return syscall.EEXIST
	case flags == XattrReplace && !exists:
		return syscall.ENODATA
	}
	n.xattrs[name] = val
	return 0
}

func (m *model) removeXattr(ino uint64, name string) syscall.Errno {
	n := m.nodes[ino]
	if n == nil {
		return syscall.ENOENT
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return 0
}

func (m *model) releaseOrphan(ino uint64) syscall.Errno {
	n := m.nodes[ino]
	if n == nil || !n.orphan {
		return syscall.ENOENT
	}
	delete(m.nodes, ino)
	return 0
}

// modelRun drives one seeded random sequence.
type modelRun struct {
	t      *testing.T
	rng    *rand.Rand
	s      *testState
	m      *model
	fids   map[string]uint64 // fid -> write id
	nextID uint64
}

var modelNames = []string{"a", "b", "c", "d", "e"}

func (r *modelRun) name() string {
	switch r.rng.IntN(40) {
	case 0:
		return "."
	case 1:
		return strings.Repeat("n", 256)
	case 2:
		return "x/y"
	}
	return modelNames[r.rng.IntN(len(modelNames))]
}

// ino picks an inode of the model (directories more often), or a missing one.
func (r *modelRun) ino(dirs bool) uint64 {
	if r.rng.IntN(30) == 0 {
		return 999999
	}
	inos := slices.Sorted(maps.Keys(r.m.nodes))
	if dirs {
		var ds []uint64
		for _, i := range inos {
			if r.m.nodes[i].typ == syscall.S_IFDIR {
				ds = append(ds, i)
			}
		}
		if r.rng.IntN(8) != 0 {
			inos = ds
		}
	}
	return inos[r.rng.IntN(len(inos))]
}

func (r *modelRun) step() string {
	var op Op
	var want syscall.Errno
	switch k := r.rng.IntN(100); {
	case k < 12:
		p, n := r.ino(true), r.name()
		op, want = &Mkdir{Parent: p, Name: n, Mode: 0o755}, r.m.mkdir(p, n)
	case k < 26:
		p, n, excl := r.ino(true), r.name(), r.rng.IntN(2) == 0
		op, want = &Create{Parent: p, Name: n, Mode: 0o644, Excl: excl}, r.m.create(p, n, excl)
	case k < 29:
		p, n := r.ino(true), r.name()
		op, want = &Symlink{Parent: p, Name: n, Target: "t" + n}, r.m.symlink(p, n, "t"+n)
	case k < 34:
		i, p, n := r.ino(false), r.ino(true), r.name()
		op, want = &Link{Ino: i, NewParent: p, NewName: n}, r.m.link(i, p, n)
	case k < 42:
		p, n, keep := r.ino(true), r.name(), r.rng.IntN(3) == 0
		op, want = &Unlink{Parent: p, Name: n, KeepIfOpen: keep}, r.m.unlink(p, n, keep)
	case k < 48:
		p, n := r.ino(true), r.name()
		op, want = &Rmdir{Parent: p, Name: n}, r.m.rmdir(p, n)
	case k < 62:
		op1, n1, np, n2 := r.ino(true), r.name(), r.ino(true), r.name()
		flags := []uint32{0, 0, 0, RenameNoReplace, RenameExchange, 3}[r.rng.IntN(6)]
		op, want = &Rename{OldParent: op1, OldName: n1, NewParent: np, NewName: n2, Flags: flags}, r.m.rename(op1, n1, np, n2, flags)
	case k < 67:
		i, size := r.ino(false), uint64(r.rng.IntN(48))
		op, want = &SetAttr{Ino: i, Valid: SetSize, Size: size}, r.m.truncate(i, size)
	case k < 80:
		i := r.ino(false)
		r.nextID++
		f := fmt.Sprintf("%d,%02x%08x", 1+r.nextID%7, r.nextID, 0xabcd)
		r.fids[f] = r.nextID
		s := Slice{Off: uint64(r.rng.IntN(40)), Len: uint64(1 + r.rng.IntN(24)), Fid: f, NeedleOff: uint64(r.rng.IntN(3))}
		op, want = &CommitSlices{Ino: i, Slices: []Slice{s}}, r.m.write(i, s, r.nextID)
	case k < 85:
		i, off, l := r.ino(false), uint64(r.rng.IntN(48)), uint64(r.rng.IntN(20))
		op, want = &PunchHole{Ino: i, Off: off, Len: l}, r.m.punch(i, off, l)
	case k < 90:
		i, n, v, fl := r.ino(false), "user."+r.name()[:1], strconv.Itoa(r.rng.IntN(9)), uint32(r.rng.IntN(3))
		op, want = &SetXattr{Ino: i, Name: n, Value: []byte(v), Flags: fl}, r.m.setXattr(i, n, v, fl)
	case k < 93:
		i, n := r.ino(false), "user."+r.name()[:1]
		op, want = &RemoveXattr{Ino: i, Name: n}, r.m.removeXattr(i, n)
	case k < 96:
		i := r.ino(false)
		op, want = &ReleaseOrphan{Ino: i}, r.m.releaseOrphan(i)
	default:
		return r.compact()
	}
	got := r.s.do(op)
	desc := fmt.Sprintf("%s %+v -> %v", op.OpType(), op, got.Errno)
	if got.Errno != want {
		r.t.Fatalf("%s, model says %v", desc, want)
	}
	return desc
}

// compact swaps a file's slices for its visible extents: the bytes must
// not change. Sometimes it uses a stale generation and must get EAGAIN.
func (r *modelRun) compact() string {
	n, _ := r.m.regular(r.ino(false))
	if n == nil {
		return "compact: no file"
	}
	in, err := r.s.GetAttr(n.ino)
	if err != nil {
		r.t.Fatal(err)
	}
	var ns []Slice
	for _, e := range VisibleExtents(in.Slices, 0, in.Size) {
		if e.Fid != "" {
			ns = append(ns, Slice{Off: e.Off, Len: e.Len, Fid: e.Fid, NeedleOff: e.NeedleOff})
		}
	}
	gen, want := in.Generation, syscall.Errno(0)
	if r.rng.IntN(4) == 0 {
		gen, want = gen-1, syscall.EAGAIN
	}
	if got := r.s.do(&ReplaceSlices{Ino: n.ino, ExpectGeneration: gen, NewSlices: ns}); got.Errno != want {
		r.t.Fatalf("replace slices of %d: %v, want %v", n.ino, got.Errno, want)
	}
	return fmt.Sprintf("replace_slices %d -> %v", n.ino, want)
}

// compare checks that the state holds exactly the model's inodes with the
// same types, sizes, link counts, entries, bytes and xattrs.
func (r *modelRun) compare() {
	t := r.t
	count := 0
	_ = r.s.view(func(tx *txn) error {
		count = tx.inodes.Stats().KeyN
		return nil
	})
	if count != len(r.m.nodes) {
		t.Fatalf("state has %d inodes, model %d", count, len(r.m.nodes))
	}
	for _, ino := range slices.Sorted(maps.Keys(r.m.nodes)) {
		n := r.m.nodes[ino]
		in, err := r.s.GetAttr(ino)
		if err != nil {
			t.Fatalf("inode %d: %v", ino, err)
		}
		if in.Type() != n.typ || in.Nlink != n.nlink {
			t.Fatalf("inode %d: type %o nlink %d, model %o %d", ino, in.Type(), in.Nlink, n.typ, n.nlink)
		}
		switch n.typ {
		case syscall.S_IFDIR:
			ents, err := r.s.ReadDir(ino, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]uint64{}
			for _, e := range ents {
				got[e.Name] = e.Ino
			}
			if !maps.Equal(got, n.entries) || in.Parent != n.parent {
				t.Fatalf("dir %d: entries %v parent %d, model %v %d", ino, got, in.Parent, n.entries, n.parent)
			}
		case syscall.S_IFLNK:
			if in.Target != n.target {
				t.Fatalf("symlink %d: %q, model %q", ino, in.Target, n.target)
			}
		case syscall.S_IFREG:
			if in.Size != uint64(len(n.data)) {
				t.Fatalf("file %d: size %d, model %d", ino, in.Size, len(n.data))
			}
			got := make([]uint64, in.Size)
			for _, e := range VisibleExtents(in.Slices, 0, in.Size) {
				for i := range e.Len {
					if e.Fid != "" {
						got[e.Off+i] = r.fids[e.Fid]<<32 | (e.NeedleOff + i)
					}
				}
			}
			if !slices.Equal(got, n.data) {
				t.Fatalf("file %d: bytes %x, model %x", ino, got, n.data)
			}
		}
		names, _ := r.s.ListXattr(ino)
		if len(names) != len(n.xattrs) {
			t.Fatalf("inode %d: xattrs %v, model %v", ino, names, n.xattrs)
		}
		for _, x := range names {
			if v, _ := r.s.GetXattr(ino, x); string(v) != n.xattrs[x] {
				t.Fatalf("inode %d xattr %s: %q, model %q", ino, x, v, n.xattrs[x])
			}
		}
	}
}

// envInt returns the integer in environment variable name, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestModel runs random namespace operations against the State and the
// model. CAIRN_FILER_SEEDS and CAIRN_FILER_OPS scale it up;
// CAIRN_FILER_SEED reruns one seed.
func TestModel(t *testing.T) {
	seeds, ops := envInt("CAIRN_FILER_SEEDS", 20), envInt("CAIRN_FILER_OPS", 500)
	first := uint64(1)
	if s := envInt("CAIRN_FILER_SEED", 0); s > 0 {
		first, seeds = uint64(s), 1
	}
	for seed := first; seed < first+uint64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, ops)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, seed)), s: newTestState(t), m: newModel(), fids: map[string]uint64{}}
	var history []string
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with CAIRN_FILER_SEED=%d); last operations:\n%s", seed, seed,
				strings.Join(history[max(0, len(history)-15):], "\n"))
		}
	}()
	for i := range ops {
		history = append(history, r.step())
		if err := r.s.Check(); err != nil {
			t.Fatalf("after %s: %v", history[len(history)-1], err)
		}
		if i%8 == 0 || i == ops-1 {
			r.compare()
		}
	}
	if os.Getenv("CAIRN_FILER_STATS") != "" {
		ok := 0
		for _, h := range history {
			if strings.HasSuffix(h, "-> 0") || strings.HasSuffix(h, "-> errno 0") {
				ok++
			}
		}
		t.Logf("%d of %d operations succeeded; %d inodes at the end", ok, len(history), len(r.m.nodes))
	}
}
