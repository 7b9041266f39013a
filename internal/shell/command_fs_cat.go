package shell

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cairn-storage/cairn/filer"
)

// catChunk is how much of a file fs.cat reads at a time.
const catChunk = 4 << 20

func init() {
	register(&Command{
		Name:    "fs.cat",
		Summary: "print a file's bytes (holes read as zeros)",
		Usage:   "PATH",
		Help: `Reads the file's visible extents from the volume servers (each needle from
any live replica) and writes the bytes to the output. With -o json the
output is {"path", "size", "data"} with the data in base64.`,
		New: func(*flag.FlagSet) Runner { return fsCat{} },
	})
}

type fsCat struct{}

// CatJSON is the JSON output of fs.cat.
type CatJSON struct {
	Path string `json:"path"`
	Size uint64 `json:"size"`
	Data []byte `json:"data"`
}

func (fsCat) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("fs.cat", args, 1, 1, "one PATH"); err != nil {
		return err
	}
	_, p, in, err := resolvePath(ctx, env, "fs.cat", args[0])
	if err != nil {
		return err
	}
	if !in.IsRegular() {
		return fmt.Errorf("fs.cat %s: is a %s, not a regular file; use fs.ls or fs.stat", p, typeName(in.Mode))
	}
	dc, err := env.Data()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := env.Out
	if env.JSON {
		w = &buf
	}
	if err := copyFile(ctx, dc, in, w); err != nil {
		return fmt.Errorf("fs.cat %s: %w", p, err)
	}
	if env.JSON {
		return jsonLine(env.Out, CatJSON{Path: p, Size: in.Size, Data: buf.Bytes()})
	}
	return nil
}

// copyFile writes the bytes of file in to w, chunk by chunk.
func copyFile(ctx context.Context, dc *filer.DataClient, in *filer.Inode, w io.Writer) error {
	zeros := make([]byte, 64<<10)
	for off := uint64(0); off < in.Size; off += catChunk {
		n := min(catChunk, in.Size-off)
		for _, e := range filer.VisibleExtents(in.Slices, off, n) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.Fid == "" {
				for left := e.Len; left > 0; {
					k := min(left, uint64(len(zeros)))
					if _, err := w.Write(zeros[:k]); err != nil {
						return err
					}
					left -= k
				}
				continue
			}
			b, err := dc.Read(ctx, e.Fid, int64(e.NeedleOff), int64(e.Len))
			if err != nil {
				return fmt.Errorf("bytes %d-%d: %w; check the volume servers with volume.list", e.Off, e.Off+e.Len-1, err)
			}
			if uint64(len(b)) != e.Len {
				return fmt.Errorf("bytes %d-%d: needle %s returned %d of %d bytes; the file's metadata points past the needle's end, run volume.scrub",
					e.Off, e.Off+e.Len-1, e.Fid, len(b), e.Len)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}
