# A volume for one Prometheus server's TSDB: one writer, owned by nobody
# (65534), the user both the official prom/prometheus image and the exec
# example run as.
#
#   nomad volume create prometheus.volume.hcl

id        = "cairn-prometheus"
name      = "cairn-prometheus"
type      = "csi"
plugin_id = "cairn"

capacity_min = "10GiB"
capacity_max = "50GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

parameters {
  uid  = "65534"
  gid  = "65534"
  mode = "0750"
}
