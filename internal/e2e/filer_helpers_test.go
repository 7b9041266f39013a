package e2e

import (
	"fmt"
	"hash/maphash"
	"math"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A small linearizability checker (the algorithm of Wing & Gong with the
// state cache of Lowe, as in porcupine) for histories of a key-value
// register map: linKeys names, each absent or holding a value, with
// write, read, delete and rename.

// linKeys is the number of names the history works on.
const linKeys = 5

// linState is the value of every name; "" is absent. Values are never "".
type linState [linKeys]string

type linKind uint8

const (
	linWrite  linKind = iota // put Value at Key (always succeeds)
	linRead                  // read Key: Value, or ENOENT
	linDelete                // delete Key: ok, or ENOENT if absent
	linRename                // move Key to Key2, replacing it: ok, or ENOENT
)

// linInput is what a client asked for.
type linInput struct {
	Kind  linKind
	Key   int
	Key2  int    // rename target
	Value string // written value
}

// linOutput is what the client saw. Unknown means the call failed without
// a definite answer (it may or may not have taken effect); such an
// operation's Return is after every other event of the history.
type linOutput struct {
	Unknown bool
	Errno   syscall.Errno
	Value   string // value read
}

// linOp is one operation of the history; Call and Return are ns since an
// arbitrary origin, Return > Call.
type linOp struct {
	Client int
	Input  linInput
	Output linOutput
	Call   int64
	Return int64
}

// linNever is the Return of an operation whose outcome is unknown.
const linNever = int64(math.MaxInt64)

func (o linOp) String() string {
	k := func(i int) string { return fmt.Sprintf("k%d", i) }
	var in string
	switch o.Input.Kind {
	case linWrite:
		in = fmt.Sprintf("write(%s, %s)", k(o.Input.Key), o.Input.Value)
	case linRead:
		in = fmt.Sprintf("read(%s)", k(o.Input.Key))
	case linDelete:
		in = fmt.Sprintf("delete(%s)", k(o.Input.Key))
	case linRename:
		in = fmt.Sprintf("rename(%s, %s)", k(o.Input.Key), k(o.Input.Key2))
	}
	var out string
	switch {
	case o.Output.Unknown:
		out = "unknown outcome"
	case o.Output.Errno != 0:
		out = fmt.Sprintf("errno %d (%v)", int(o.Output.Errno), o.Output.Errno)
	case o.Input.Kind == linRead:
		out = o.Output.Value
	default:
		out = "ok"
	}
	ret := "never"
	if o.Return != linNever {
		ret = time.Duration(o.Return).String()
	}
	return fmt.Sprintf("client %d: %s -> %s  [%v .. %s]", o.Client, in, out, time.Duration(o.Call), ret)
}

// linStep applies op to s: the next state and whether the operation's
// output is possible in s.
func linStep(s linState, in linInput, out linOutput) (linState, bool) {
	switch in.Kind {
	case linWrite:
		if !out.Unknown && out.Errno != 0 {
			return s, false
		}
		s[in.Key] = in.Value
		return s, true
	case linRead:
		switch {
		case out.Unknown:
			return s, true
		case out.Errno == syscall.ENOENT:
			return s, s[in.Key] == ""
		case out.Errno != 0:
			return s, false
		}
		return s, out.Value != "" && s[in.Key] == out.Value
	case linDelete:
		present := s[in.Key] != ""
		s[in.Key] = ""
		switch {
		case out.Unknown:
			return s, true
		case out.Errno == syscall.ENOENT:
			return s, !present
		case out.Errno != 0:
			return s, false
		}
		return s, present
	case linRename:
		present := s[in.Key] != ""
		if present && in.Key != in.Key2 {
			s[in.Key2], s[in.Key] = s[in.Key], ""
		}
		switch {
		case out.Unknown:
			return s, true
		case out.Errno == syscall.ENOENT:
			return s, !present
		case out.Errno != 0:
			return s, false
		}
		return s, present
	}
	return s, false
}

func (s linState) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "k%d=%s", i, v)
	}
	b.WriteByte('}')
	return b.String()
}

type linVerdict int

const (
	linOk linVerdict = iota
	linIllegal
	linUnknown // the checker timed out
)

func (v linVerdict) String() string {
	return [...]string{"Ok", "Illegal", "Unknown (checker timed out)"}[v]
}

// linReport explains an Illegal verdict: the longest prefix the checker
// could linearize (operation indices in order) and the operations it could
// not place after it.
type linReport struct {
	Longest []int
	Stuck   []int
}

type linEntry struct {
	op         int
	call       bool
	match      *linEntry // the return entry of a call
	prev, next *linEntry
}

type linBits []uint64

func (b linBits) set(i int)   { b[i/64] |= 1 << (i % 64) }
func (b linBits) clear(i int) { b[i/64] &^= 1 << (i % 64) }

func (b linBits) equal(o linBits) bool {
	for i := range b {
		if b[i] != o[i] {
			return false
		}
	}
	return true
}

type linCacheEntry struct {
	bits  linBits
	state linState
}

// linCheck decides whether ops (any order) is linearizable from the empty
// state, giving up after timeout.
func linCheck(ops []linOp, timeout time.Duration) (linVerdict, linReport) {
	type ev struct {
		t    int64
		call bool
		op   int
	}
	evs := make([]ev, 0, 2*len(ops))
	for i, o := range ops {
		evs = append(evs, ev{o.Call, true, i}, ev{o.Return, false, i})
	}
	// At equal times calls go first: the operations then count as
	// concurrent, the lenient reading of clocks that cannot tell them apart.
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].call && !evs[j].call
	})
	head := &linEntry{}
	prev := head
	calls := make([]*linEntry, len(ops))
	for _, e := range evs {
		n := &linEntry{op: e.op, call: e.call, prev: prev}
		if e.call {
			calls[e.op] = n
		} else {
			calls[e.op].match = n
		}
		prev.next = n
		prev = n
	}
	lift := func(e *linEntry) {
		e.prev.next = e.next
		e.next.prev = e.prev
		m := e.match
		m.prev.next = m.next
		if m.next != nil {
			m.next.prev = m.prev
		}
	}
	unlift := func(e *linEntry) {
		m := e.match
		m.prev.next = m
		if m.next != nil {
			m.next.prev = m
		}
		e.prev.next = e
		e.next.prev = e
	}

	seed := maphash.MakeSeed()
	hashOf := func(b linBits, s linState) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		for _, w := range b {
			var x [8]byte
			for i := range x {
				x[i] = byte(w >> (8 * i))
			}
			h.Write(x[:])
		}
		for _, v := range s {
			h.WriteString(v)
			h.WriteByte(0)
		}
		return h.Sum64()
	}
	cache := map[uint64][]linCacheEntry{}
	bits := make(linBits, (len(ops)+63)/64)
	// remember adds (bits, s) to the cache; false if it was there already.
	remember := func(s linState) bool {
		h := hashOf(bits, s)
		for _, c := range cache[h] {
			if c.state == s && c.bits.equal(bits) {
				return false
			}
		}
		cache[h] = append(cache[h], linCacheEntry{append(linBits(nil), bits...), s})
		return true
	}

	type frame struct {
		e     *linEntry
		state linState
	}
	var stack []frame
	var state linState
	var longest []int
	deadline := time.Now().Add(timeout)
	e := head.next
	for iter := 0; head.next != nil; iter++ {
		if iter%4096 == 0 && time.Now().After(deadline) {
			return linUnknown, linReport{}
		}
		if e.call {
			o := ops[e.op]
			if next, ok := linStep(state, o.Input, o.Output); ok {
				bits.set(e.op)
				if remember(next) {
					stack = append(stack, frame{e, state})
					state = next
					lift(e)
					if len(stack) > len(longest) {
						longest = longest[:0]
						for _, f := range stack {
							longest = append(longest, f.e.op)
						}
					}
					e = head.next
					continue
				}
				bits.clear(e.op)
			}
			e = e.next
			continue
		}
		// A return whose call could not be placed: backtrack.
		if len(stack) == 0 {
			return linIllegal, linReport{Longest: longest, Stuck: stuckAfter(ops, longest)}
		}
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		bits.clear(f.e.op)
		state = f.state
		unlift(f.e)
		e = f.e.next
	}
	return linOk, linReport{}
}

// stuckAfter returns the operations not in prefix that were called before
// the first of them returned: the candidates for the next step, none of
// which fits.
func stuckAfter(ops []linOp, prefix []int) []int {
	in := make([]bool, len(ops))
	for _, i := range prefix {
		in[i] = true
	}
	first := linNever
	for i, o := range ops {
		if !in[i] && o.Return < first {
			first = o.Return
		}
	}
	var out []int
	for i, o := range ops {
		if !in[i] && o.Call <= first {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return ops[out[a]].Call < ops[out[b]].Call })
	return out
}

// explain renders a report: the tail of the longest linearization with the
// state after each step, then the operations that could not follow it.
func (r linReport) explain(ops []linOp) string {
	var b strings.Builder
	var s linState
	from := max(0, len(r.Longest)-25)
	for i, op := range r.Longest {
		s, _ = linStep(s, ops[op].Input, ops[op].Output)
		if i >= from {
			fmt.Fprintf(&b, "  %5d. %s\n         => %v\n", i, ops[op], s)
		}
	}
	fmt.Fprintf(&b, "longest linearizable prefix: %d of %d operations; none of these fits next:\n", len(r.Longest), len(ops))
	for _, op := range r.Stuck {
		fmt.Fprintf(&b, "  %s\n", ops[op])
	}
	return b.String()
}

// TestLinCheckerSelfTest makes sure the checker accepts linearizable
// histories and rejects the anomalies the end-to-end test looks for.
func TestLinCheckerSelfTest(t *testing.T) {
	w := func(c, k int, v string, call, ret int64) linOp {
		return linOp{Client: c, Input: linInput{Kind: linWrite, Key: k, Value: v}, Call: call, Return: ret}
	}
	r := func(c, k int, v string, call, ret int64) linOp {
		out := linOutput{Value: v}
		if v == "" {
			out = linOutput{Errno: syscall.ENOENT}
		}
		return linOp{Client: c, Input: linInput{Kind: linRead, Key: k}, Output: out, Call: call, Return: ret}
	}
	mv := func(c, a, b int, errno syscall.Errno, call, ret int64) linOp {
		return linOp{Client: c, Input: linInput{Kind: linRename, Key: a, Key2: b}, Output: linOutput{Errno: errno}, Call: call, Return: ret}
	}
	del := func(c, k int, errno syscall.Errno, call, ret int64) linOp {
		return linOp{Client: c, Input: linInput{Kind: linDelete, Key: k}, Output: linOutput{Errno: errno}, Call: call, Return: ret}
	}
	unknown := func(o linOp) linOp { o.Output = linOutput{Unknown: true}; o.Return = linNever; return o }
	for _, tc := range []struct {
		name string
		ops  []linOp
		want linVerdict
	}{
		{"sequential", []linOp{w(0, 0, "a", 0, 1), r(1, 0, "a", 2, 3), mv(0, 0, 1, 0, 4, 5), r(1, 1, "a", 6, 7), r(1, 0, "", 8, 9), del(0, 1, 0, 10, 11), del(0, 1, syscall.ENOENT, 12, 13)}, linOk},
		{"concurrent read sees either", []linOp{w(0, 0, "a", 0, 1), w(0, 0, "b", 2, 10), r(1, 0, "a", 3, 4), r(1, 0, "b", 5, 6)}, linOk},
		{"stale read", []linOp{w(0, 0, "a", 0, 1), w(0, 0, "b", 2, 3), r(1, 0, "a", 4, 5)}, linIllegal},
		{"read goes back in time", []linOp{w(0, 0, "a", 0, 1), w(0, 0, "b", 2, 10), r(1, 0, "b", 3, 4), r(1, 0, "a", 5, 6)}, linIllegal},
		{"lost acknowledged write", []linOp{w(0, 0, "a", 0, 1), r(1, 0, "", 2, 3)}, linIllegal},
		{"rename leaves source", []linOp{w(0, 0, "a", 0, 1), mv(0, 0, 1, 0, 2, 3), r(1, 0, "a", 4, 5)}, linIllegal},
		{"rename of absent must fail", []linOp{mv(0, 0, 1, 0, 0, 1)}, linIllegal},
		{"delete applied twice", []linOp{w(0, 0, "a", 0, 1), del(0, 0, 0, 2, 3), del(1, 0, 0, 4, 5)}, linIllegal},
		{"unknown write may take effect", []linOp{unknown(w(0, 0, "a", 0, 1)), r(1, 0, "", 2, 3), r(1, 0, "a", 4, 5)}, linOk},
		{"unknown write may not take effect", []linOp{unknown(w(0, 0, "a", 0, 1)), r(1, 0, "", 2, 3)}, linOk},
		{"unknown write takes effect once", []linOp{unknown(w(0, 0, "a", 0, 1)), r(1, 0, "a", 2, 3), r(1, 0, "", 4, 5)}, linIllegal},
		{"not before its call", []linOp{r(1, 0, "a", 0, 1), unknown(w(0, 0, "a", 2, 3))}, linIllegal},
	} {
		got, rep := linCheck(tc.ops, 10*time.Second)
		if got != tc.want {
			t.Errorf("%s: %v, want %v\n%s", tc.name, got, tc.want, rep.explain(tc.ops))
		}
	}
}
