package filer

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// SliceList is the slice list of an inode. In JSON (answers to clients,
// and the inode records of a state of the embedded format, which Restore
// converts) it is one base64 string of a compact binary form, not an array
// of objects: an overwrite-heavy file holds thousands of slices, and
// decoding JSON objects costs several times more. The array form written
// by early versions is still read.
//
// Binary form: the version byte 1, then per slice Off, Len, NeedleOff and
// len(Fid) as unsigned varints followed by the bytes of Fid.
type SliceList []Slice

const sliceListV1 = 1

// MarshalJSON encodes l in the compact form.
func (l SliceList) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	out := make([]byte, 0, 2+base64.StdEncoding.EncodedLen(1+len(l)*32))
	out = append(out, '"')
	out = l.appendBase64(out)
	return append(out, '"'), nil
}

// appendBase64 appends the base64 of l's binary form to dst.
func (l SliceList) appendBase64(dst []byte) []byte {
	b := make([]byte, 0, 1+len(l)*32)
	b = append(b, sliceListV1)
	for _, s := range l {
		b = binary.AppendUvarint(b, s.Off)
		b = binary.AppendUvarint(b, s.Len)
		b = binary.AppendUvarint(b, s.NeedleOff)
		b = binary.AppendUvarint(b, uint64(len(s.Fid)))
		b = append(b, s.Fid...)
	}
	return base64.StdEncoding.AppendEncode(dst, b)
}

// UnmarshalJSON decodes the compact form or the array of objects.
func (l *SliceList) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*l = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		var old []Slice
		if err := json.Unmarshal(b, &old); err != nil {
			return err
		}
		*l = old
		return nil
	case len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"':
		return fmt.Errorf("%w: slice list is neither a string nor an array", ErrCorrupt)
	}
	out, err := decodeSliceListBase64(b[1 : len(b)-1])
	if err != nil {
		return err
	}
	*l = out
	return nil
}

// decodeSliceListBase64 decodes the base64 of the binary form.
func decodeSliceListBase64(b64 []byte) (SliceList, error) {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Decode(raw, b64)
	if err != nil {
		return nil, fmt.Errorf("%w: slice list: %w", ErrCorrupt, err)
	}
	return decodeSliceList(raw[:n])
}

// decodeSliceList decodes the binary form.
func decodeSliceList(b []byte) (SliceList, error) {
	if len(b) == 0 || b[0] != sliceListV1 {
		return nil, fmt.Errorf("%w: slice list of unknown version", ErrCorrupt)
	}
	b = b[1:]
	out := make(SliceList, 0, len(b)/16)
	var lastFid string
	for len(b) > 0 {
		var v [4]uint64
		for i := range v {
			x, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, fmt.Errorf("%w: slice list truncated", ErrCorrupt)
			}
			v[i], b = x, b[k:]
		}
		if v[3] > uint64(len(b)) {
			return nil, fmt.Errorf("%w: slice list truncated", ErrCorrupt)
		}
		// Neighbouring slices often share a needle: share the string.
		if string(b[:v[3]]) != lastFid {
			lastFid = string(b[:v[3]])
		}
		out = append(out, Slice{Off: v[0], Len: v[1], NeedleOff: v[2], Fid: lastFid})
		b = b[v[3]:]
	}
	return out, nil
}
