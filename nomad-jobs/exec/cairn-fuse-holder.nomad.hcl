# cairn-fuse-holder: on every client, a tiny process that keeps the mount
# service's /dev/fuse descriptors, so that the mount service can be
# restarted or upgraded while applications keep their mounts (requests wait
# in the kernel instead of failing with ENOTCONN). Start it before
# cairn-mount-service. It is never updated or restarted in normal operation:
# stopping it aborts every FUSE connection it holds, so only change this job
# on a drained node (see README.md, "Upgrades").
# raw_exec flavour: the cairn binary must be on every client at var.cairn_bin.

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "cairn_bin" {
  type    = string
  default = "/usr/local/bin/cairn"
}

variable "socket" {
  type        = string
  default     = "/run/cairn/fuse-holder.sock"
  description = "unix socket the holder serves the mount service on"
}

job "cairn-fuse-holder" {
  datacenters = var.datacenters
  type        = "system"
  priority    = 90

  group "holder" {
    restart {
      attempts = 100
      interval = "1h"
      delay    = "2s"
      mode     = "delay"
    }

    task "holder" {
      driver = "raw_exec"

      config {
        command = var.cairn_bin
        args    = ["fuse-holder", "--socket", var.socket]
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
