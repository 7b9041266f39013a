package shell

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:        "volume.fsck",
		Summary:     "compare the filer's needle references with the needles on the volume servers",
		Usage:       "[-volumeId N] [-collection NAME] [-grace 1h] [-apply]",
		Destructive: true,
		Help: `Reads every needle the filer references (files, snapshots, clones), its
uploads in flight and its delete queue, and the index of every replica of
every volume, and reports:

  missing   referenced but absent (or deleted) on every replica: data loss in
            the files using it; restore them from a backup. An error.
  orphaned  present on a volume server, referenced by nothing, not being
            uploaded, not queued for deletion, and older than -grace.

A referenced needle live on some replicas but absent or deleted on others
is under-replicated, also an error: rewrite the files using it while a good
copy remains. Damaged needles are reported with the files (and snapshot
files) whose data uses them. With -apply the orphans are deleted, after
confirmation, once more checked against the filer just before; nothing
referenced is ever deleted. The check only writes with -apply.

Every needle on the scanned volumes is taken to belong to the filer. Blobs
stored directly through the volume servers' HTTP API (/dir/assign, PUT
/<fid>) are not referenced by the filer: keep them in their own collection
and leave it out with -collection, or never use -apply.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeFsck{}
			fs.UintVar(&c.vid, "volumeId", 0, "check only this volume (0: all)")
			fs.StringVar(&c.collection, "collection", "", "check only the volumes of this collection (default: all)")
			fs.DurationVar(&c.grace, "grace", time.Hour, "unreferenced needles younger than this are not orphans yet")
			fs.BoolVar(&c.apply, "apply", false, "delete the orphaned needles")
			return c
		},
	})
}

type volumeFsck struct {
	vid        uint
	collection string
	grace      time.Duration
	apply      bool
}

// FsckNeedleJSON is one needle reported by volume.fsck.
type FsckNeedleJSON struct {
	Fid      string    `json:"fid"`
	Size     uint32    `json:"size"`
	Appended time.Time `json:"appended,omitzero"`
	// Servers holds the orphan (orphans), or lacks it (missing,
	// under-replicated).
	Servers []string `json:"servers"`
	Reason  string   `json:"reason,omitempty"`
	// Files are the paths whose data uses a missing needle; snapshot
	// trees as "snapshot NAME:/path".
	Files []string `json:"files,omitempty"`
}

// FsckJSON is the JSON output of volume.fsck.
type FsckJSON struct {
	Volumes         int              `json:"volumes"`
	Replicas        int              `json:"replicas"`
	Needles         uint64           `json:"needles_scanned"`
	Referenced      int              `json:"referenced"`
	Leased          int              `json:"uploads_in_flight"`
	Queued          int              `json:"queued_for_deletion"`
	Missing         []FsckNeedleJSON `json:"missing"`
	UnderReplicated []FsckNeedleJSON `json:"under_replicated"`
	Orphans         []FsckNeedleJSON `json:"orphans"`
	OrphanBytes     uint64           `json:"orphan_bytes"`
	TooRecent       int              `json:"unreferenced_within_grace"`
	Unverified      int              `json:"unverified"` // referenced needles on replicas that could not be scanned
	ScanErrors      []string         `json:"scan_errors"`
	Applied         bool             `json:"applied"`
	Deleted         []string         `json:"deleted"`
	DeleteErrors    []string         `json:"delete_errors"`
}

// needleRef names a needle independently of how its fid is spelled.
type needleRef struct {
	vol uint32
	key uint64
}

// filerRefs is what the filer holds on to.
type filerRefs struct {
	referenced map[needleRef]string // -> fid as the filer spells it
	leased     map[needleRef]bool
	queued     map[needleRef]bool
}

func (c *volumeFsck) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.fsck", args, 0, 0, "only flags"); err != nil {
		return err
	}
	if c.grace < 0 {
		return fmt.Errorf("%w: volume.fsck: -grace must not be negative", errUsage)
	}
	fc, err := env.Filer()
	if err != nil {
		return err
	}
	// References read before the scan decide what is missing (a needle
	// written during the scan is not), those read after it what is orphaned
	// (a needle referenced during the scan is not).
	before, err := readFilerRefs(ctx, fc, false)
	if err != nil {
		return fmt.Errorf("volume.fsck: read the filer's references: %s", rpcMessage(err))
	}
	targets, err := replicaTargets(ctx, env, "volume.fsck", uint32(c.vid))
	if err != nil {
		return err
	}
	targets = slices.DeleteFunc(targets, func(t replicaTarget) bool {
		return c.collection != "" && t.volume.Collection != c.collection
	})
	started := time.Now()
	scan, out := c.scan(ctx, env, targets)
	if ctx.Err() != nil {
		return fmt.Errorf("volume.fsck: interrupted after scanning %d of %d replicas; nothing was changed, run it again", len(scan), len(targets))
	}
	after, err := readFilerRefs(ctx, fc, true)
	if err != nil {
		return fmt.Errorf("volume.fsck: read the filer's references: %s", rpcMessage(err))
	}
	c.analyze(&out, targets, scan, before, after, started)
	if len(out.Missing)+len(out.UnderReplicated) > 0 {
		if err := filesUsing(ctx, env, fc, out.Missing, out.UnderReplicated); err != nil {
			env.Progressf("volume.fsck: could not name the files using the damaged needles: %s", rpcMessage(err))
		}
	}
	if c.apply && len(out.Orphans) > 0 {
		if err := c.deleteOrphans(ctx, env, fc, &out); err != nil {
			return err
		}
	}
	if err := env.Emit(out, func(w io.Writer) error { return printFsck(w, &out) }); err != nil {
		return err
	}
	var problems []string
	if n := len(out.Missing); n > 0 {
		problems = append(problems, fmt.Sprintf("%d referenced needles are missing on every replica (data loss in the files using them; restore those files from a backup)", n))
	}
	if n := len(out.UnderReplicated); n > 0 {
		problems = append(problems, fmt.Sprintf("%d referenced needles are not on every replica of their volume (a catch-up pass copies a missing one back but spreads a deletion; rewrite the files using them while a good copy remains)", n))
	}
	if n := len(out.ScanErrors); n > 0 {
		problems = append(problems, fmt.Sprintf("%d replicas could not be scanned (%s); run volume.fsck again when they are back", n, strings.Join(out.ScanErrors, "; ")))
	}
	if n := len(out.DeleteErrors); n > 0 {
		problems = append(problems, fmt.Sprintf("%d orphans could not be deleted (%s); run volume.fsck -apply again", n, strings.Join(out.DeleteErrors, "; ")))
	}
	if len(problems) > 0 {
		return errors.New("volume.fsck: " + strings.Join(problems, "; "))
	}
	return nil
}

// readFilerRefs reads the referenced needles and, with all, the uploads in
// flight and the delete queue.
func readFilerRefs(ctx context.Context, fc *filer.Client, all bool) (*filerRefs, error) {
	r := &filerRefs{referenced: map[needleRef]string{}, leased: map[needleRef]bool{}, queued: map[needleRef]bool{}}
	var refs []string
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "referenced"}, &refs); err != nil {
		return nil, err
	}
	for _, f := range refs {
		// Inline data is held by the filer, not by volume servers.
		if id, err := fid.Parse(f); err == nil && !id.Inline() {
			r.referenced[needleRef{id.Volume, id.Key}] = f
		}
	}
	if !all {
		return r, nil
	}
	var ups []filer.Upload
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "leases"}, &ups); err != nil {
		return nil, err
	}
	for _, u := range ups {
		if id, err := fid.Parse(u.Fid); err == nil {
			r.leased[needleRef{id.Volume, id.Key}] = true
		}
	}
	var queued []string
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "pending_deletes", Limit: 1 << 30}, &queued); err != nil {
		return nil, err
	}
	for _, f := range queued {
		if id, err := fid.Parse(f); err == nil {
			r.queued[needleRef{id.Volume, id.Key}] = true
		}
	}
	return r, nil
}

// replicaIndex is one scanned replica: key -> its latest index entry.
type replicaIndex struct {
	target  replicaTarget
	entries map[uint64]*pb.IndexEntry
}

// scan reads the index of every target, reporting progress; it stops early
// when ctx ends. Replicas that fail are recorded in out.ScanErrors.
func (c *volumeFsck) scan(ctx context.Context, env *Env, targets []replicaTarget) ([]replicaIndex, FsckJSON) {
	out := FsckJSON{Missing: []FsckNeedleJSON{}, UnderReplicated: []FsckNeedleJSON{}, Orphans: []FsckNeedleJSON{},
		ScanErrors: []string{}, Deleted: []string{}, DeleteErrors: []string{}, Replicas: len(targets)}
	vols := map[uint32]bool{}
	var done []replicaIndex
	for i, t := range targets {
		if ctx.Err() != nil {
			return done, out
		}
		vols[t.volume.Id] = true
		entries, err := readIndex(ctx, env, t)
		if err != nil {
			if ctx.Err() != nil {
				return done, out
			}
			out.ScanErrors = append(out.ScanErrors, fmt.Sprintf("volume %d on %s: %s", t.volume.Id, t.server, rpcMessage(err)))
			env.Progressf("volume.fsck: [%d/%d] volume %d on %s: %s", i+1, len(targets), t.volume.Id, t.server, rpcMessage(err))
			continue
		}
		out.Needles += uint64(len(entries))
		env.Progressf("volume.fsck: [%d/%d] volume %d on %s: %d index entries", i+1, len(targets), t.volume.Id, t.server, len(entries))
		done = append(done, replicaIndex{target: t, entries: entries})
	}
	out.Volumes = len(vols)
	return done, out
}

func readIndex(ctx context.Context, env *Env, t replicaTarget) (map[uint64]*pb.IndexEntry, error) {
	vc, err := env.volumeClient(t.server)
	if err != nil {
		return nil, err
	}
	stream, err := vc.VolumeIndex(ctx, &pb.VolumeIndexRequest{VolumeId: t.volume.Id})
	if err != nil {
		return nil, err
	}
	entries := map[uint64]*pb.IndexEntry{}
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		entries[e.Key] = e
	}
}

// analyze fills out's missing, under-replicated and orphaned needles.
func (c *volumeFsck) analyze(out *FsckJSON, targets []replicaTarget, scan []replicaIndex, before, after *filerRefs, started time.Time) {
	out.Referenced, out.Leased, out.Queued = len(after.referenced), len(after.leased), len(after.queued)
	byVol := map[uint32][]replicaIndex{}
	for _, ri := range scan {
		byVol[ri.target.volume.Id] = append(byVol[ri.target.volume.Id], ri)
	}
	replicas := map[uint32][]string{}
	for _, t := range targets {
		replicas[t.volume.Id] = append(replicas[t.volume.Id], t.server)
	}
	scope := func(vol uint32) bool {
		return (c.vid == 0 || uint32(c.vid) == vol) && (c.collection == "" || replicas[vol] != nil)
	}

	// Missing: referenced before and after the scan, live on no replica.
	for ref, f := range before.referenced {
		if _, still := after.referenced[ref]; !still || !scope(ref.vol) {
			continue
		}
		id, _ := fid.Parse(f)
		n := FsckNeedleJSON{Fid: f, Servers: []string{}}
		if replicas[ref.vol] == nil {
			if c.collection == "" {
				n.Reason = fmt.Sprintf("volume %d is unknown to the masters", ref.vol)
				out.Missing = append(out.Missing, n)
			}
			continue
		}
		live := 0
		var why []string
		for _, ri := range byVol[ref.vol] {
			e := ri.entries[ref.key]
			switch {
			case e != nil && !e.Deleted && e.Cookie == id.Cookie:
				live++
				n.Size = e.Size
				continue
			case e != nil && e.Deleted:
				why = append(why, "deleted on "+ri.target.server)
			case e != nil:
				why = append(why, "another cookie on "+ri.target.server)
			default:
				why = append(why, "absent on "+ri.target.server)
			}
			n.Servers = append(n.Servers, ri.target.server)
		}
		switch {
		case live > 0 && len(n.Servers) > 0:
			n.Reason = strings.Join(why, ", ")
			out.UnderReplicated = append(out.UnderReplicated, n)
		case live == 0 && len(byVol[ref.vol]) < len(replicas[ref.vol]):
			out.Unverified++
		case live == 0:
			n.Reason = "absent or deleted on every replica"
			out.Missing = append(out.Missing, n)
		}
	}

	// Orphans: live somewhere, held by nothing after the scan, old enough.
	cutoff := uint64(started.Add(-c.grace).UnixNano())
	orphans := map[needleRef]*FsckNeedleJSON{}
	recent := map[needleRef]bool{}
	for _, ri := range scan {
		vol := ri.target.volume.Id
		for key, e := range ri.entries {
			ref := needleRef{vol, key}
			if e.Deleted || after.leased[ref] || after.queued[ref] {
				continue
			}
			if _, ok := after.referenced[ref]; ok {
				continue
			}
			if e.AppendNs > cutoff {
				recent[ref] = true
				continue
			}
			o := orphans[ref]
			if o == nil {
				o = &FsckNeedleJSON{Fid: fid.FileID{Volume: vol, Key: key, Cookie: e.Cookie}.String(), Size: e.Size,
					Appended: time.Unix(0, int64(e.AppendNs)).UTC(), Servers: []string{}}
				orphans[ref] = o
			}
			o.Servers = append(o.Servers, ri.target.server)
		}
	}
	out.TooRecent = len(recent)
	for _, o := range orphans {
		out.Orphans = append(out.Orphans, *o)
		out.OrphanBytes += uint64(o.Size)
	}
	byFid := func(a, b FsckNeedleJSON) int { return cmp.Compare(a.Fid, b.Fid) }
	slices.SortFunc(out.Missing, byFid)
	slices.SortFunc(out.UnderReplicated, byFid)
	slices.SortFunc(out.Orphans, byFid)
}

// deleteOrphans asks for confirmation, checks every orphan against the
// filer once more and deletes those still held by nothing.
func (c *volumeFsck) deleteOrphans(ctx context.Context, env *Env, fc *filer.Client, out *FsckJSON) error {
	if err := env.Confirm(fmt.Sprintf("delete %d orphaned needles (%s) from the volume servers", len(out.Orphans), humanBytes(out.OrphanBytes))); err != nil {
		return fmt.Errorf("volume.fsck -apply: %w", err)
	}
	now, err := readFilerRefs(ctx, fc, true)
	if err != nil {
		return fmt.Errorf("volume.fsck -apply: read the filer's references again: %s; nothing was deleted", rpcMessage(err))
	}
	data := &filer.DataClient{
		Lookup: fc.LookupVolume, HTTP: httpx.Client(env.sec, 60*time.Second),
		Scheme: httpx.Scheme(env.sec), Tokens: env.sec.DataTokens(),
	}
	out.Applied = true
	for i, o := range out.Orphans {
		if ctx.Err() != nil {
			return fmt.Errorf("volume.fsck -apply: interrupted after deleting %d of %d orphans; run it again to finish", len(out.Deleted), len(out.Orphans))
		}
		id, _ := fid.Parse(o.Fid)
		ref := needleRef{id.Volume, id.Key}
		if _, ok := now.referenced[ref]; ok || now.leased[ref] || now.queued[ref] {
			out.DeleteErrors = append(out.DeleteErrors, o.Fid+": referenced again meanwhile, kept")
			continue
		}
		if err := data.Delete(ctx, o.Fid); err != nil {
			out.DeleteErrors = append(out.DeleteErrors, fmt.Sprintf("%s: %v", o.Fid, err))
			continue
		}
		out.Deleted = append(out.Deleted, o.Fid)
		env.Progressf("volume.fsck: [%d/%d] deleted orphan %s", i+1, len(out.Orphans), o.Fid)
	}
	return nil
}

func printFsck(w io.Writer, f *FsckJSON) error {
	fmt.Fprintf(w, "scanned %d replicas of %d volumes (%d index entries); the filer references %d needles, %d uploads in flight, %d queued for deletion\n",
		f.Replicas, f.Volumes, f.Needles, f.Referenced, f.Leased, f.Queued)
	section := func(title string, ns []FsckNeedleJSON, servers string) {
		if len(ns) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		tw := newTable(w)
		fmt.Fprintf(tw, "  FID\tSIZE\t%s\n", servers)
		for _, n := range ns {
			where := strings.Join(n.Servers, ",")
			if n.Reason != "" && servers != "ON" {
				where = n.Reason
			}
			if len(n.Files) > 0 {
				where += "; used by " + strings.Join(n.Files, ", ")
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", n.Fid, n.Size, where)
		}
		tw.Flush()
	}
	section("Missing (referenced, absent on every replica: data loss)", f.Missing, "WHY")
	section("Under-replicated (absent or deleted on some replicas)", f.UnderReplicated, "WHY")
	section("Orphaned (unreferenced)", f.Orphans, "ON")
	fmt.Fprintf(w, "\n%d missing, %d under-replicated, %d orphaned (%s), %d unreferenced but younger than the grace period\n",
		len(f.Missing), len(f.UnderReplicated), len(f.Orphans), humanBytes(f.OrphanBytes), f.TooRecent)
	if f.Unverified > 0 {
		fmt.Fprintf(w, "%d referenced needles could not be verified (replicas not scanned)\n", f.Unverified)
	}
	if f.Applied {
		fmt.Fprintf(w, "deleted %d orphaned needles", len(f.Deleted))
		if len(f.DeleteErrors) > 0 {
			fmt.Fprintf(w, "; %d not deleted", len(f.DeleteErrors))
		}
		fmt.Fprintln(w)
	} else if len(f.Orphans) > 0 {
		fmt.Fprintf(w, "run volume.fsck -apply to delete the orphans\n")
	}
	return nil
}

// fsckWalkLimit bounds the inodes filesUsing visits.
const fsckWalkLimit = 1000000

// filesUsing walks the namespace and every snapshot tree and records in each
// damaged needle the paths of the files whose slices use it.
func filesUsing(ctx context.Context, env *Env, fc *filer.Client, damaged ...[]FsckNeedleJSON) error {
	byFid := map[string]*FsckNeedleJSON{}
	for _, list := range damaged {
		for i := range list {
			byFid[list[i].Fid] = &list[i]
		}
	}
	var snaps []filer.SnapshotInfo
	if err := fc.Read(ctx, &pb.FilerReadRequest{Op: "snapshots"}, &snaps); err != nil {
		return err
	}
	type dir struct {
		ino  uint64
		path string
	}
	roots := []dir{{filer.RootIno, "/"}}
	prefix := map[uint64]string{filer.RootIno: ""}
	for _, sn := range snaps {
		roots = append(roots, dir{sn.Root, "/"})
		prefix[sn.Root] = "snapshot " + sn.Name + ":"
	}
	visited := 0
	for _, root := range roots {
		queue := []dir{root}
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			err := eachEntry(ctx, fc, d.ino, func(e filer.DirEntry) error {
				visited++
				if visited > fsckWalkLimit {
					return fmt.Errorf("stopped after %d inodes", fsckWalkLimit)
				}
				if visited%10000 == 0 {
					env.Progressf("volume.fsck: looking for the files using damaged needles: %d inodes", visited)
				}
				p := joinPath(d.path, e.Name)
				switch e.Mode & syscall.S_IFMT {
				case syscall.S_IFDIR:
					queue = append(queue, dir{e.Ino, p})
				case syscall.S_IFREG:
					in, err := fc.GetAttr(ctx, e.Ino)
					if err != nil {
						return err
					}
					for _, sl := range in.Slices {
						if n := byFid[sl.Fid]; n != nil && !slices.Contains(n.Files, prefix[root.ino]+p) {
							n.Files = append(n.Files, prefix[root.ino]+p)
						}
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
