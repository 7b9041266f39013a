# cairn-fuse-holder: on every client, a tiny process that keeps the mount
# service's /dev/fuse descriptors, so that the mount service can be
# restarted or upgraded while applications keep their mounts (requests wait
# in the kernel instead of failing with ENOTCONN). Start it before
# cairn-mount-service. It is never updated or restarted in normal operation:
# stopping it aborts every FUSE connection it holds, so only change this job
# on a drained node (see README.md, "Upgrades").
# docker flavour: the socket directory is the client's host volume
# var.run_volume (client config: host_volume "cairn-run" { path = "/run/cairn" }),
# shared with cairn-mount-service.

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "image" {
  type        = string
  default     = "cairn:latest"
  description = "the cairn image (docker build -t cairn:latest . in the repository)"
}

variable "run_volume" {
  type        = string
  default     = "cairn-run"
  description = "client host volume holding the sockets (/run/cairn on the host)"
}

job "cairn-fuse-holder" {
  datacenters = var.datacenters
  type        = "system"
  priority    = 90

  group "holder" {
    volume "run" {
      type   = "host"
      source = var.run_volume
    }

    restart {
      attempts = 100
      interval = "1h"
      delay    = "2s"
      mode     = "delay"
    }

    task "holder" {
      driver = "docker"

      volume_mount {
        volume      = "run"
        destination = "/run/cairn"
      }

      config {
        image = var.image
        args  = ["fuse-holder", "--socket", "/run/cairn/fuse-holder.sock"]
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
