package shell

import (
	"strings"
	"testing"
)

func TestQuotaGet(t *testing.T) {
	fresh(t, "/qget")
	putFile(t, "/qget/f", make([]byte, 100))
	var q QuotaJSON
	mustJSON(t, &q, "quota.get /qget/f")
	if q.Root != 1 || q.IsRoot || q.MaxBytes != 0 || q.Bytes < 100 || q.Inodes < 3 {
		t.Fatalf("quota of a file under the root quota: %+v", q)
	}
	if out := mustRun(t, "-c", "quota.get /"); !strings.Contains(out, "/ itself") || !strings.Contains(out, "unlimited") {
		t.Fatalf("text: %q", out)
	}
}
