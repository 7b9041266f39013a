package master

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range testLog() {
		f.Add(c)
	}
	for _, s := range []string{
		`{"v":1,"type":"lease_keys","n":0}`,
		`{"v":1,"type":"lease_keys","n":99999999999}`,
		`{"v":1,"type":"lease_keys","n":5,"primary":"a:1"}`,
		`{"v":1,"type":"set_primary","volume_id":1}`,
		`{"v":1,"type":"add_volume","volume":{"id":1,"replication":"0","replicas":["a:1"],"primary":"a:1"}}`,
		`{"v":1,"type":"add_volume","volume":{"id":1,"replication":"000","replicas":["a:1","a:1"],"primary":"a:1"}}`,
		`{"v":1,"type":"register_server","server":{"url":"nohostport"}}`,
		`{"v":1,"type":"reserve_volume_id","extra":1}`,
		`{"v":1,"type":"reserve_volume_id"} {}`,
		`{"v":0,"type":"reserve_volume_id"}`,
		`null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			// A rejected command leaves the state alone.
			f := newFSM()
			before := snapshotBytes(t, f)
			if r, ok := applyCmd(f, 1, b).(error); !ok || !errors.Is(r, ErrBadCommand) {
				t.Fatalf("Apply of undecodable command returned %v", r)
			}
			if after := snapshotBytes(t, f); string(before) != string(after) {
				t.Fatal("undecodable command changed the state")
			}
			return
		}
		// Valid commands survive a round trip and apply without panicking.
		c2, err := decodeCommand(encodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed %+v into %+v", c, c2)
		}
		st := newState()
		st.apply(c)
	})
}
