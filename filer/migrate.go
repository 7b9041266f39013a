package filer

import (
	"bytes"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// A state written before the slices bucket (format formatEmbedded) keeps
// each regular file's slice list inside its inode record, overlapping
// slices and holes included. Such a state only ever arrives through
// Restore (a Raft snapshot taken by an earlier version: the state file
// itself is rebuilt at every start), and Restore converts it before the
// state is used, in one transaction: every member restoring the same
// snapshot converts it the same way, so they stay identical.

// convertStateFile converts the state file at path, not in use, to the
// current format if it is of the embedded one.
func convertStateFile(path string) error {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	_, err = migrateEmbedded(db)
	if err == nil {
		err = migrateNoInline(db)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// migrateEmbedded converts a state of format formatEmbedded in db to the
// current format and returns the number of files whose slices moved.
// Each file's list becomes its visible pieces (visiblePieces: what
// placeSlices would have left); the references are recounted per piece
// (added before the old ones are dropped, so a needle in both never
// reaches zero; a needle none of whose bytes were visible any more reaches
// the delete queue, as the command that hid it would do now).
func migrateEmbedded(db *bolt.DB) (int, error) {
	files := 0
	err := db.Update(func(tx *bolt.Tx) error {
		return catch(func() error {
			if !bytes.Equal(tx.Bucket(bucketMeta).Get(metaFormat), formatEmbedded) {
				return nil
			}
			if _, err := tx.CreateBucketIfNotExists(bucketSlices); err != nil {
				return err
			}
			t := newTxn(tx, 0)
			var embedded []*Inode
			t.must(t.inodes.ForEach(func(k, v []byte) error {
				in := &Inode{}
				if err := decodeInode(v, in); err != nil {
					return fmt.Errorf("inode %d: %w", keyU64(k), err)
				}
				if len(in.Slices) > 0 {
					embedded = append(embedded, in)
				}
				return nil
			}))
			for _, in := range embedded {
				if !in.IsRegular() {
					t.mustf("inode %d of mode %o has slices", in.Ino, in.Mode)
				}
				pieces := visiblePieces(in.Slices)
				t.addSlices(pieces)
				t.dropSlices(in.Slices)
				for _, p := range pieces {
					t.putPiece(in.Ino, p)
				}
				t.putInode(in)
			}
			files = len(embedded)
			t.must(t.meta.Put(metaFormat, formatNoInline))
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("filer: convert a state with slice lists in its inodes: %w", err)
	}
	if files > 0 {
		slog.Info("filer: moved the slice lists of a restored state's files out of their inodes into the slices bucket",
			"files", files)
	}
	return files, nil
}

// migrateNoInline converts a state of format formatNoInline (which the
// embedded one becomes first) to the current format: it adds the empty
// inline bucket. No data moves.
func migrateNoInline(db *bolt.DB) error {
	err := db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if !bytes.Equal(meta.Get(metaFormat), formatNoInline) {
			return nil
		}
		if _, err := tx.CreateBucketIfNotExists(bucketInline); err != nil {
			return err
		}
		return meta.Put(metaFormat, formatVersion)
	})
	if err != nil {
		return fmt.Errorf("filer: add the inline data bucket to a restored state: %w", err)
	}
	return nil
}
