package volume

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"testing"
)

// FuzzReadBody: any Content-Type and body give either an error or the
// needle data, never more bytes than were sent; nothing panics.
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
		data, err := readBody(r)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				t.Fatalf("body of %d bytes refused as too large: %v", len(body), err)
			}
			return
		}
		if len(data) > len(body) {
			t.Fatalf("body of %d bytes read as a needle of %d", len(body), len(data))
		}
	})
}
