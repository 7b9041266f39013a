package master

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cairn-storage/cairn/internal/pb"
)

// maxCollectionLen bounds a collection name; volume servers use it in file
// names and accept the same set.
const maxCollectionLen = 64

// maxQueryValue bounds any other query value (a data center name).
const maxQueryValue = 256

// validCollection checks a collection name: up to 64 ASCII letters, digits,
// '_' or '-' ("" is the default collection).
func validCollection(name string) error {
	if len(name) > maxCollectionLen {
		return fmt.Errorf("collection name of %d bytes is longer than %d", len(name), maxCollectionLen)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("collection name %q may only hold letters, digits, '_' and '-'", name)
		}
	}
	return nil
}

// parseAssignQuery validates the parameters of /dir/assign (count,
// replication, collection, dataCenter) once, at the edge. Errors are API
// errors with status 400.
func parseAssignQuery(q url.Values) (*pb.AssignRequest, error) {
	req := &pb.AssignRequest{
		Replication: q.Get("replication"),
		Collection:  q.Get("collection"),
		DataCenter:  q.Get("dataCenter"),
	}
	if c := q.Get("count"); c != "" {
		n, err := strconv.ParseUint(c, 10, 32)
		if err != nil {
			return nil, apiErrorf(http.StatusBadRequest, "count=%.40q is not a positive number", c)
		}
		if n > maxAssignCount {
			return nil, apiErrorf(http.StatusBadRequest, "count=%d is too large; ask for at most %d file ids at once", n, maxAssignCount)
		}
		req.Count = uint32(n)
	}
	if req.Replication != "" {
		if _, err := parsePlacement(req.Replication); err != nil {
			return nil, apiErrorf(http.StatusBadRequest, "%v", err)
		}
	}
	if err := validCollection(req.Collection); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, "%v", err)
	}
	if len(req.DataCenter) > maxQueryValue {
		return nil, apiErrorf(http.StatusBadRequest, "dataCenter of %d bytes is longer than %d", len(req.DataCenter), maxQueryValue)
	}
	return req, nil
}

// parseLookupQuery returns the volume id named by /dir/lookup's volumeId
// (or fileId): a volume id, or a file id whose volume is wanted.
func parseLookupQuery(q url.Values) (uint32, string, error) {
	arg := q.Get("volumeId")
	if arg == "" {
		arg = q.Get("fileId")
	}
	vs := strings.TrimPrefix(arg, "/")
	if i := strings.IndexAny(vs, ",/"); i >= 0 {
		vs = vs[:i]
	}
	id, err := strconv.ParseUint(vs, 10, 32)
	if err != nil || id == 0 {
		return 0, arg, apiErrorf(http.StatusBadRequest, "volumeId=%.80q is neither a volume id nor a file id like 3,01637037d6", arg)
	}
	return uint32(id), arg, nil
}
