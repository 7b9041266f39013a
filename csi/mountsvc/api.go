// Package mountsvc is the cairn mount service: a long-lived process that
// hosts the FUSE mounts of CSI volumes on a node, so that restarting or
// upgrading the CSI node plugin never takes a mounted volume away from the
// applications using it.
//
// The node plugin talks to it over a unix socket with JSON over HTTP:
//
//	POST /v1/mount    MountRequest   -> MountResponse
//	POST /v1/unmount  UnmountRequest -> UnmountResponse
//	GET  /v1/mounts                  -> ListResponse
//
// An error is a non-2xx status with an ErrorResponse body whose Code says
// what the caller can do about it. The service persists its mounts to a
// state file, so that when it is restarted it mounts them again.
package mountsvc

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of ErrorResponse.Code.
const (
	CodeInvalid     = "invalid"     // the request is malformed
	CodeNotFound    = "not_found"   // the volume does not exist on the filer
	CodeConflict    = "conflict"    // the directory or volume is mounted differently
	CodeUnavailable = "unavailable" // the filer could not be reached
	CodeInternal    = "internal"    // anything else (mount failed, ...)
)

// Mount describes one mount hosted by the service. It is also the record
// kept in the state file.
type Mount struct {
	// VolumeID is the CSI volume id.
	VolumeID string `json:"volume_id"`
	// Root is the filer directory mounted (the volume's subtree).
	Root string `json:"root"`
	// Dir is the mount point on this node (the CSI staging path).
	Dir string `json:"dir"`
	// ReadOnly mounts read-only.
	ReadOnly bool `json:"read_only,omitempty"`
	// Replication and Collection place data written through the mount.
	Replication string `json:"replication,omitempty"`
	Collection  string `json:"collection,omitempty"`
}

// MountStatus is a Mount as reported by List.
type MountStatus struct {
	Mount
	// Alive is false when the FUSE server of the mount has stopped (for
	// example, it was unmounted from outside).
	Alive bool `json:"alive"`
}

// MountRequest asks for Mount to be mounted. It is idempotent: the same
// volume already mounted at Dir with the same options succeeds.
type MountRequest struct {
	Mount
}

// MountResponse answers a MountRequest.
type MountResponse struct {
	// Already is true when the volume was mounted at Dir before the call.
	Already bool `json:"already"`
}

// UnmountRequest asks for the mount at Dir to be flushed and unmounted.
// Unmounting a directory the service does not host succeeds.
type UnmountRequest struct {
	Dir string `json:"dir"`
}

// UnmountResponse answers an UnmountRequest.
type UnmountResponse struct {
	// Was is true when the service hosted a mount at Dir.
	Was bool `json:"was"`
}

// ListResponse lists the mounts hosted by the service.
type ListResponse struct {
	Mounts []MountStatus `json:"mounts"`
}

// ErrorResponse is the body of every failed call.
type ErrorResponse struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Error is a failed call, as returned by Client.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("mount service: %s", e.Msg) }

// ErrorCode returns the Code of err if it is an *Error, else "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func httpStatus(code string) int {
	switch code {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
