package shell

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestQuotaSet(t *testing.T) {
	fresh(t, "/qset")
	putFile(t, "/qset/d/f", make([]byte, 1000))
	var q QuotaJSON
	mustJSON(t, &q, "quota.set /qset/d -bytes 4K -inodes 10")
	if !q.IsRoot || q.MaxBytes != 4096 || q.MaxInodes != 10 || q.Bytes != 1000 || q.Inodes != 2 {
		t.Fatalf("after quota.set: %+v", q)
	}
	// A limit not given keeps its value.
	mustJSON(t, &q, "quota.set /qset/d -inodes 20")
	if q.MaxBytes != 4096 || q.MaxInodes != 20 {
		t.Fatalf("after changing inodes only: %+v", q)
	}
	// The limit is enforced.
	c := cluster(t)
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Filers[0].HTTP+"/qset/d/big", bytes.NewReader(make([]byte, 8192)))
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("write over the quota: %d, want 507", resp.StatusCode)
	}
	mustJSON(t, &q, "quota.set /qset/d -remove")
	if q.IsRoot || q.Root != 1 {
		t.Fatalf("after -remove: %+v", q)
	}
	for cmd, want := range map[string]string{
		"quota.set /qset/d":              "give -bytes",
		"quota.set /qset/d/f -bytes 1":   "not a directory",
		"quota.set /qset/d -bytes lots":  "not a size",
		"quota.set /qset/d -remove":      "not a quota root",
		"quota.set /qset/nope -inodes 1": "no such file",
	} {
		_, errs, code := runShell(t, "-c", cmd)
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d %q, want an error with %q", cmd, code, errs, want)
		}
	}
}
