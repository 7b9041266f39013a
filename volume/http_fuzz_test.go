package volume

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"testing"

	"github.com/cairn-storage/cairn/internal/fid"
)

// FuzzReadBody: any Content-Type and body give either an error or the
// needle data, never more bytes than were sent, and the needle encodes to
// a record that decodes to the same data (a plain body is read straight
// into its record buffer); nothing panics.
func FuzzReadBody(f *testing.F) {
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "a.txt")
	fw.Write([]byte("needle"))
	mw.Close()
	f.Add(mw.FormDataContentType(), form.Bytes())
	f.Add("application/octet-stream", []byte("raw needle"))
	f.Add("multipart/form-data; boundary=x", []byte("--x--\r\n"))
	f.Add("multipart/form-data", []byte("--\r\n"))
	f.Add("text/plain; charset=\"", []byte{0})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r, _ := http.NewRequest(http.MethodPut, "/1,01637037d6", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		n, err := readBody(r, fid.FileID{Volume: 1, Key: 1, Cookie: 0x637037d6})
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				t.Fatalf("body of %d bytes refused as too large: %v", len(body), err)
			}
			return
		}
		data := bytes.Clone(n.Data)
		if len(data) > len(body) {
			t.Fatalf("body of %d bytes read as a needle of %d", len(body), len(data))
		}
		got, err := DecodeRecord(EncodeRecord(n))
		if err != nil || !bytes.Equal(got.Data, data) || got.Key != 1 || got.Cookie != 0x637037d6 || got.CRC != n.CRC {
			t.Fatalf("the needle read from the body does not survive encoding: %v", err)
		}
	})
}
