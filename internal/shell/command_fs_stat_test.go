package shell

import (
	"strings"
	"testing"
)

func TestFsStat(t *testing.T) {
	fresh(t, "/stat")
	putFile(t, "/stat/f", []byte("hello"))
	var st StatJSON
	mustJSON(t, &st, "fs.stat /stat/f")
	if st.Path != "/stat/f" || st.Type != "file" || st.Inode == nil || st.Size != 5 || len(st.Slices) != 1 || st.Slices[0].Fid == "" {
		t.Fatalf("stat: %+v", st)
	}
	out := mustRun(t, "-c", "fs.stat /stat")
	for _, want := range []string{"type:", "dir", "drwx", "quota root:"} {
		if !strings.Contains(out, want) {
			t.Errorf("stat of a directory lacks %q:\n%s", want, out)
		}
	}
}
