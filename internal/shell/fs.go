package shell

import (
	"context"
	"path"

	"github.com/cairn-storage/cairn/filer"
)

// readDirPage is how many entries one readdir call asks for.
const readDirPage = 1000

// resolvePath cleans p and resolves it on the filer.
func resolvePath(ctx context.Context, env *Env, cmd, p string) (*filer.Client, string, *filer.Inode, error) {
	fc, err := env.Filer()
	if err != nil {
		return nil, "", nil, err
	}
	clean, err := cleanPath(p)
	if err != nil {
		return nil, "", nil, fsError(cmd, p, err)
	}
	in, err := fc.Resolve(ctx, clean)
	if err != nil {
		return nil, "", nil, fsError(cmd, clean, err)
	}
	return fc, clean, in, nil
}

// eachEntry calls fn for every entry of directory ino, in name order,
// reading it page by page.
func eachEntry(ctx context.Context, fc *filer.Client, ino uint64, fn func(filer.DirEntry) error) error {
	after := ""
	for {
		ents, err := fc.ReadDir(ctx, ino, after, readDirPage)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(ents) < readDirPage {
			return nil
		}
		after = ents[len(ents)-1].Name
	}
}

// joinPath joins a directory path and an entry name.
func joinPath(dir, name string) string { return path.Join(dir, name) }
