package e2e

import (
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model checked with porcupine: a key-value register map of linKeys
// names, each absent or holding a value, with write, read, delete and
// rename.

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

type linVerdict = porcupine.CheckResult

const (
	linOk      = porcupine.Ok
	linIllegal = porcupine.Illegal
	linUnknown = porcupine.Unknown // the checker timed out
)

// linModel is the register-map model for porcupine.
var linModel = porcupine.Model{
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		next, ok := linStep(state.(linState), input.(linInput), output.(linOutput))
		return ok, next
	},
	Equal: func(a, b any) bool { return a.(linState) == b.(linState) },
	DescribeOperation: func(input, output any) string {
		return linOp{Input: input.(linInput), Output: output.(linOutput)}.String()
	},
	DescribeState: func(state any) string { return state.(linState).String() },
}

// linReport keeps what porcupine found, to render a visualization.
type linReport struct {
	info porcupine.LinearizationInfo
}

// linCheck checks ops with porcupine.
func linCheck(ops []linOp, timeout time.Duration) (linVerdict, linReport) {
	hist := make([]porcupine.Operation, len(ops))
	for i, o := range ops {
		hist[i] = porcupine.Operation{ClientId: o.Client, Input: o.Input, Call: o.Call, Output: o.Output, Return: o.Return}
	}
	res, info := porcupine.CheckOperationsVerbose(linModel, hist, timeout)
	return res, linReport{info: info}
}

// explain writes porcupine's visualization of the history to a file and
// says where it is.
func (r linReport) explain(_ []linOp) string {
	f, err := os.CreateTemp("", "cairn-linearizability-*.html")
	if err != nil {
		return "could not write a visualization: " + err.Error()
	}
	defer f.Close()
	if err := porcupine.Visualize(linModel, r.info, f); err != nil {
		return "could not write a visualization: " + err.Error()
	}
	return "porcupine's visualization of the history: " + f.Name()
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
