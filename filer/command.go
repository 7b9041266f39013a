package filer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// ErrBadCommand is wrapped by every error decoding a Raft command. Such a
// command is not applied.
var ErrBadCommand = errors.New("filer: bad raft command")

// CommandVersion is the newest encoding version this filer writes and
// reads. Version 1 is one JSON object. Version 2, written only for a
// CommitSlices carrying inline data, is the byte binaryCommand, the length
// of the JSON object as an unsigned varint, the JSON object (with "v":2
// and each inline write's length but not its bytes), then the bytes of
// the inline writes in order: the data is neither base64-encoded nor
// scanned by the JSON decoder, and a filer that knows only version 1
// refuses the command (it is not JSON) instead of dropping bytes it does
// not know.
const CommandVersion = 2

// binaryCommand is the first byte of a version 2 command ('{' starts a
// version 1 one).
const binaryCommand = 0x02

// inlineOf returns the inline writes of op, if it has any.
func inlineOf(op Op) []InlineData {
	if cs, ok := op.(*CommitSlices); ok {
		return cs.Inline
	}
	return nil
}

// Command is one mutation of the namespace, the payload of one Raft log
// entry. ClientID and Seq identify it for at-most-once execution: the state
// remembers the last Seq and Result of every client and answers a repeated
// (ClientID, Seq) with the stored Result without applying it again; an
// empty ClientID or a zero Seq opts out. Time (ns since the epoch) is set
// by the proposer and is the only clock Apply uses (ctime, default mtime).
type Command struct {
	ClientID string
	Seq      uint64
	Time     int64
	Op       Op
}

// Op is the operation of a Command; one of the types in this file.
type Op interface {
	// OpType is the type tag of the operation in the encoding.
	OpType() string
}

// wireCommand is the JSON encoding of a Command.
type wireCommand struct {
	V        int             `json:"v"`
	Type     string          `json:"type"`
	ClientID string          `json:"client,omitempty"`
	Seq      uint64          `json:"seq,omitempty"`
	Time     int64           `json:"time"`
	Op       json.RawMessage `json:"op"`
}

// Encode returns the encoding of c: version 1 (JSON) unless it carries
// inline data.
func (c *Command) Encode() ([]byte, error) {
	if c.Op == nil {
		return nil, fmt.Errorf("%w: no operation", ErrBadCommand)
	}
	op, err := json.Marshal(c.Op)
	if err != nil {
		return nil, fmt.Errorf("filer: encode %s command: %w", c.Op.OpType(), err)
	}
	inline := inlineOf(c.Op)
	v := 1
	if len(inline) > 0 {
		v = 2
	}
	js, err := json.Marshal(wireCommand{V: v, Type: c.Op.OpType(), ClientID: c.ClientID, Seq: c.Seq, Time: c.Time, Op: op})
	if v == 1 || err != nil {
		return js, err
	}
	n := 0
	for _, d := range inline {
		n += len(d.Data)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(js)+n)
	b = append(b, binaryCommand)
	b = binary.AppendUvarint(b, uint64(len(js)))
	b = append(b, js...)
	for _, d := range inline {
		b = append(b, d.Data...)
	}
	return b, nil
}

// DecodeCommand decodes a Command encoded by Encode. It never panics; every
// error wraps ErrBadCommand. The inline data of the command aliases b.
func DecodeCommand(b []byte) (*Command, error) {
	var data []byte // the bytes after the JSON object of a version 2 command
	if len(b) > 0 && b[0] == binaryCommand {
		n, k := binary.Uvarint(b[1:])
		if k <= 0 || n > uint64(len(b)-1-k) {
			return nil, fmt.Errorf("%w: truncated binary command", ErrBadCommand)
		}
		b, data = b[1+k:1+k+int(n)], b[1+k+int(n):]
	}
	var w wireCommand
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	switch {
	case w.V < 1 || w.V > CommandVersion:
		return nil, fmt.Errorf("%w: version %d, want 1 to %d", ErrBadCommand, w.V, CommandVersion)
	case (w.V == 2) != (data != nil):
		return nil, fmt.Errorf("%w: version %d in the wrong encoding", ErrBadCommand, w.V)
	}
	newOp, ok := opTypes[w.Type]
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q", ErrBadCommand, w.Type)
	}
	op := newOp()
	if len(w.Op) == 0 || string(w.Op) == "null" {
		return nil, fmt.Errorf("%w: %s without operation", ErrBadCommand, w.Type)
	}
	if err := decodeOp(w.Op, op); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, w.Type, err)
	}
	if err := fillInline(inlineOf(op), data, w.V); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, w.Type, err)
	}
	return &Command{ClientID: w.ClientID, Seq: w.Seq, Time: w.Time, Op: op}, nil
}

// decodeOp decodes the JSON of an operation into op. A CommitSlices is
// decoded with its inline writes as plain structs: through
// InlineData.UnmarshalJSON, each would run a decoder of its own.
func decodeOp(b []byte, op Op) error {
	cs, ok := op.(*CommitSlices)
	if !ok {
		return json.Unmarshal(b, op)
	}
	// The outer Inline hides the embedded one: every other field of the
	// JSON object goes to cs.
	w := struct {
		*CommitSlices
		Inline []wireInline `json:"inline,omitempty"`
	}{CommitSlices: cs}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	cs.Inline = nil
	if w.Inline != nil {
		cs.Inline = make([]InlineData, len(w.Inline))
		for i, d := range w.Inline {
			cs.Inline[i] = InlineData{Off: d.Off, n: d.Len}
		}
	}
	return nil
}

// fillInline gives the inline writes of a decoded command of version v
// their bytes from data, which they must use up exactly.
func fillInline(inline []InlineData, data []byte, v int) error {
	if (len(inline) > 0) != (v == 2) {
		return fmt.Errorf("%d inline writes in a version %d command", len(inline), v)
	}
	for i := range inline {
		n := inline[i].n
		if n > uint64(len(data)) {
			return fmt.Errorf("inline write %d of %d bytes runs past the command's data", i, n)
		}
		inline[i].Data, data = data[:n:n], data[n:]
	}
	if len(data) > 0 {
		return fmt.Errorf("%d bytes after the inline writes", len(data))
	}
	return nil
}

var opTypes = map[string]func() Op{}

func init() {
	for _, op := range []Op{
		&Mkdir{}, &Create{}, &Symlink{}, &Link{}, &Unlink{}, &Rmdir{}, &Rename{},
		&SetAttr{}, &CommitSlices{}, &PunchHole{}, &Fallocate{}, &ReplaceSlices{},
		&SetXattr{}, &RemoveXattr{}, &SetQuota{}, &Snapshot{}, &Clone{},
		&DeleteSnapshot{}, &DequeueDeleted{}, &ReleaseOrphan{}, &CreateTmp{},
		&BeginUpload{}, &ExpireUploads{}, &ExpireSessions{}, &FixRefs{},
	} {
		typ := reflect.TypeOf(op).Elem()
		opTypes[op.OpType()] = func() Op { return reflect.New(typ).Interface().(Op) }
	}
}

// Mkdir creates directory Name in Parent.
type Mkdir struct {
	Parent uint64 `json:"parent"`
	Name   string `json:"name"`
	Mode   uint32 `json:"mode"` // permission bits
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
}

// Create creates regular file Name in Parent. If the name exists, Excl
// (O_EXCL) makes it fail with EEXIST; otherwise an existing directory gives
// EISDIR and any other existing inode is returned unchanged.
type Create struct {
	Parent uint64 `json:"parent"`
	Name   string `json:"name"`
	Mode   uint32 `json:"mode"`
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
	Excl   bool   `json:"excl,omitempty"`
}

// CreateTmp creates a regular file in no directory (open with O_TMPFILE
// in Parent): an orphan with Nlink 0, charged to Parent's quota root like
// a file created there, freed by ReleaseOrphan at its last close unless
// Link gives it a name first.
type CreateTmp struct {
	Parent uint64 `json:"parent"`
	Mode   uint32 `json:"mode"` // permission bits
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
}

// Symlink creates symbolic link Name in Parent pointing at Target.
type Symlink struct {
	Parent uint64 `json:"parent"`
	Name   string `json:"name"`
	Target string `json:"target"`
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
}

// Link adds entry NewName in NewParent for inode Ino (EPERM for a
// directory). The inode stays charged to its quota root. A file made by
// CreateTmp gets its first link and leaves the orphan list (linkat with
// AT_EMPTY_PATH of an O_TMPFILE descriptor); a file unlinked while open
// cannot get a name back (ENOENT), as on Linux.
type Link struct {
	Ino       uint64 `json:"ino"`
	NewParent uint64 `json:"new_parent"`
	NewName   string `json:"new_name"`
}

// Unlink removes the non-directory entry Name of Parent. When the last
// link goes and KeepIfOpen is set (the file is open in a mount), the inode
// is kept on the orphan list with Nlink 0, still readable and writable by
// inode number, until ReleaseOrphan frees it.
type Unlink struct {
	Parent     uint64 `json:"parent"`
	Name       string `json:"name"`
	KeepIfOpen bool   `json:"keep_if_open,omitempty"`
}

// Rmdir removes the empty directory Name of Parent. Removing a quota root
// drops its quota.
type Rmdir struct {
	Parent uint64 `json:"parent"`
	Name   string `json:"name"`
}

// Rename flags, as renameat2(2).
const (
	RenameNoReplace uint32 = 1 << 0 // RENAME_NOREPLACE
	RenameExchange  uint32 = 1 << 1 // RENAME_EXCHANGE
)

// Rename moves entry OldName of OldParent to NewName of NewParent,
// atomically replacing an existing file or empty directory there.
// KeepIfOpen applies to a replaced file as in Unlink.
type Rename struct {
	OldParent  uint64 `json:"old_parent"`
	OldName    string `json:"old_name"`
	NewParent  uint64 `json:"new_parent"`
	NewName    string `json:"new_name"`
	Flags      uint32 `json:"flags,omitempty"`
	KeepIfOpen bool   `json:"keep_if_open,omitempty"`
}

// SetAttr field selectors for SetAttr.Valid.
const (
	SetMode uint32 = 1 << iota
	SetUid
	SetGid
	SetSize
	SetAtime
	SetMtime
)

// SetAttr changes the attributes selected by Valid. SetSize truncates or
// extends a regular file (EISDIR for a directory, EINVAL otherwise); it
// sets mtime to the command time unless SetMtime is also given. Ctime is
// always set to the command time.
type SetAttr struct {
	Ino   uint64 `json:"ino"`
	Valid uint32 `json:"valid"`
	Mode  uint32 `json:"mode,omitempty"` // permission bits only; the type stays
	Uid   uint32 `json:"uid,omitempty"`
	Gid   uint32 `json:"gid,omitempty"`
	Size  uint64 `json:"size,omitempty"`
	Atime int64  `json:"atime,omitempty"`
	Mtime int64  `json:"mtime,omitempty"`
}

// CommitSlices is the write path: it appends Slices to the file's list
// (the new ones win), grows the size to at least Size and the end of every
// slice, and sets mtime (the command time if Mtime is 0). A fid on the
// delete queue is refused with ESTALE. With Truncate the file's previous
// slices are dropped and its size becomes Size (or the end of the last new
// slice if larger): a whole-file replacement in one atomic step.
//
// Inline carries small writes with their bytes (at most MaxInlineBytes in
// all, in at most MaxInlineSlices pieces; E2BIG beyond), placed after
// Slices: the filer stores them itself and the result's Fids name them,
// in order (inline.go). A slice naming an inline fid that holds nothing
// is refused with EINVAL.
//
// With OmitSlices the result's inode comes without its slice list: a
// client that knows the list at the generation before (Generation-1 of
// the result) rebuilds it with AppendSlices, and the filer neither
// decodes the inode a second time nor ships a list that grows with every
// small write (a database's data file holds thousands of slices).
type CommitSlices struct {
	Ino        uint64       `json:"ino"`
	Slices     []Slice      `json:"slices"`
	Size       uint64       `json:"size,omitempty"`
	Mtime      int64        `json:"mtime,omitempty"`
	Truncate   bool         `json:"truncate,omitempty"`
	OmitSlices bool         `json:"omit_slices,omitempty"`
	Inline     []InlineData `json:"inline,omitempty"`
}

// InlineData is a write of Data at file offset Off carried by a
// CommitSlices. Its JSON holds the offset and the length; the bytes
// follow the JSON object in the command's encoding.
type InlineData struct {
	Off  uint64
	Data []byte
	n    uint64 // decoded length, before the bytes are attached
}

type wireInline struct {
	Off uint64 `json:"off"`
	Len uint64 `json:"len"`
}

func (d InlineData) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireInline{Off: d.Off, Len: uint64(len(d.Data))})
}

func (d *InlineData) UnmarshalJSON(b []byte) error {
	var w wireInline
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*d = InlineData{Off: w.Off, n: w.Len}
	return nil
}

// PunchHole makes [Off, Off+Len) read as zeros without changing the size;
// the part past the end of the file is ignored.
type PunchHole struct {
	Ino uint64 `json:"ino"`
	Off uint64 `json:"off"`
	Len uint64 `json:"len"`
}

// Fallocate modes, as fallocate(2).
const (
	FallocKeepSize  uint32 = 0x01 // FALLOC_FL_KEEP_SIZE
	FallocPunchHole uint32 = 0x02 // FALLOC_FL_PUNCH_HOLE, only with KEEP_SIZE
)

// Fallocate with Mode 0 extends the file to Off+Len if it is shorter,
// keeping its data; KEEP_SIZE alone changes nothing (space is not
// reserved); PUNCH_HOLE|KEEP_SIZE is PunchHole; other modes EOPNOTSUPP.
type Fallocate struct {
	Ino  uint64 `json:"ino"`
	Off  uint64 `json:"off"`
	Len  uint64 `json:"len"`
	Mode uint32 `json:"mode,omitempty"`
}

// ReplaceSlices swaps the slice list of a file for NewSlices (a compacted
// equivalent) only if the file's Generation still equals ExpectGeneration,
// else it fails with EAGAIN and changes nothing. NewSlices must lie within
// the file size.
type ReplaceSlices struct {
	Ino              uint64  `json:"ino"`
	ExpectGeneration uint64  `json:"expect_gen"`
	NewSlices        []Slice `json:"new_slices"`
}

// Xattr flags, as setxattr(2).
const (
	XattrCreate  uint32 = 1 // XATTR_CREATE: fail with EEXIST if present
	XattrReplace uint32 = 2 // XATTR_REPLACE: fail with ENODATA if absent
)

// SetXattr sets extended attribute Name of Ino.
type SetXattr struct {
	Ino   uint64 `json:"ino"`
	Name  string `json:"name"`
	Value []byte `json:"value"`
	Flags uint32 `json:"flags,omitempty"`
}

// RemoveXattr removes extended attribute Name of Ino (ENODATA if absent).
type RemoveXattr struct {
	Ino  uint64 `json:"ino"`
	Name string `json:"name"`
}

// SetQuota makes directory Ino a quota root with the given limits (0 is
// unlimited), or changes its limits. Remove drops the quota root (not for
// the root directory, which is always one); its usage moves to the
// enclosing quota root. Limits below the current usage are accepted; later
// growth then fails with EDQUOT.
type SetQuota struct {
	Ino       uint64 `json:"ino"`
	MaxBytes  uint64 `json:"max_bytes,omitempty"`
	MaxInodes uint64 `json:"max_inodes,omitempty"`
	Remove    bool   `json:"remove,omitempty"`
}

// Snapshot copies the metadata of the live directory tree at SrcIno into a
// new read-only snapshot called Name (unique; EEXIST otherwise).
type Snapshot struct {
	SrcIno uint64 `json:"src_ino"`
	Name   string `json:"name"`
}

// Clone makes a writable copy named Name in DstParent of the live inode
// SrcIno (any type) or, if SnapshotID is set, of that snapshot's tree. The
// copy is charged to DstParent's quota root; quota roots inside the source
// are not copied.
type Clone struct {
	SrcIno     uint64 `json:"src_ino,omitempty"`
	SnapshotID uint64 `json:"snapshot_id,omitempty"`
	DstParent  uint64 `json:"dst_parent"`
	Name       string `json:"name"`
}

// DeleteSnapshot drops snapshot ID and its references to needles.
type DeleteSnapshot struct {
	ID uint64 `json:"id"`
}

// DequeueDeleted removes Fids from the delete queue once the GC worker has
// deleted the needles from the volume servers. Fids not queued are ignored.
type DequeueDeleted struct {
	Fids []string `json:"fids"`
}

// ReleaseOrphan frees an inode kept by Unlink or Rename with KeepIfOpen
// once the last open handle is closed (ENOENT if it is not an orphan).
type ReleaseOrphan struct {
	Ino uint64 `json:"ino"`
}

func (*Mkdir) OpType() string          { return "mkdir" }
func (*Create) OpType() string         { return "create" }
func (*Symlink) OpType() string        { return "symlink" }
func (*Link) OpType() string           { return "link" }
func (*Unlink) OpType() string         { return "unlink" }
func (*Rmdir) OpType() string          { return "rmdir" }
func (*Rename) OpType() string         { return "rename" }
func (*SetAttr) OpType() string        { return "setattr" }
func (*CommitSlices) OpType() string   { return "commit_slices" }
func (*PunchHole) OpType() string      { return "punch_hole" }
func (*Fallocate) OpType() string      { return "fallocate" }
func (*ReplaceSlices) OpType() string  { return "replace_slices" }
func (*SetXattr) OpType() string       { return "setxattr" }
func (*RemoveXattr) OpType() string    { return "removexattr" }
func (*SetQuota) OpType() string       { return "set_quota" }
func (*Snapshot) OpType() string       { return "snapshot" }
func (*Clone) OpType() string          { return "clone" }
func (*DeleteSnapshot) OpType() string { return "delete_snapshot" }
func (*DequeueDeleted) OpType() string { return "dequeue_deleted" }
func (*ReleaseOrphan) OpType() string  { return "release_orphan" }
func (*CreateTmp) OpType() string      { return "create_tmp" }
