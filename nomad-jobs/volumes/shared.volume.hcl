# A volume shared by many allocations on many nodes, all writing (uploads,
# static sites, build caches). Mounts on different nodes have close-to-open
# consistency (docs/mount.md): a file closed on one node is seen whole by an
# open on another. The root is group-writable by gid 1000 with the setgid
# bit, so files created there stay in the group.
#
#   nomad volume create shared.volume.hcl

id        = "cairn-shared"
name      = "cairn-shared"
type      = "csi"
plugin_id = "cairn"

capacity_min = "10GiB"
capacity_max = "100GiB"

capability {
  access_mode     = "multi-node-multi-writer"
  attachment_mode = "file-system"
}

capability {
  access_mode     = "multi-node-reader-only"
  attachment_mode = "file-system"
}

parameters {
  uid  = "0"
  gid  = "1000"
  mode = "2775"
}
