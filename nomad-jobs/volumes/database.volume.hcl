# A volume for one database (PostgreSQL, MySQL, SQLite): one writer at a
# time, on one node. The root of the volume belongs to uid/gid with mode
# 0700, as PostgreSQL wants its data directory:
#   - 999:999 is the user of the official postgres Docker image
#     (docker/postgres.nomad.hcl);
#   - with exec/postgres.nomad.hcl (Debian's postgresql package) use the
#     ids of the host's postgres user: `id -u postgres`, `id -g postgres`.
# Without `replication`, data gets the master's default placement
# (cairn-master's var.replication, 001 = two copies); set it per volume
# with replication = "xyz".
#
#   nomad volume create database.volume.hcl

id        = "cairn-db"
name      = "cairn-db"
type      = "csi"
plugin_id = "cairn"

# The capacity is the volume's quota: writes past it fail with ENOSPC.
# `nomad volume create` asks for capacity_min rounded up to a whole MiB;
# the quota can be raised later (ControllerExpandVolume).
capacity_min = "2GiB"
capacity_max = "20GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

parameters {
  uid  = "999"
  gid  = "999"
  mode = "0700"
}
