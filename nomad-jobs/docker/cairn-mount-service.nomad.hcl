# cairn-mount-service: on every client that runs the node plugin, the
# process that hosts the FUSE mounts of CSI volumes (docs/csi.md). The node
# plugin asks it over /run/cairn/mount.sock to mount a volume at the
# staging path. With var.holder (the default), its /dev/fuse descriptors
# are kept by cairn-fuse-holder, so rolling this job to a new version is
# invisible to applications, and a crash of it is survived (Linux 6.9 and
# later; see docs/csi.md, "Restarts"); start cairn-fuse-holder first.
#
# docker flavour: privileged (FUSE mounts), with /dev/fuse, and three client
# host volumes (see README.md):
#   host_volume "cairn-run"   { path = "/run/cairn" }                       sockets, shared with the plugin and the holder
#   host_volume "cairn-state" { path = "/var/lib/cairn/mount-service" }     the record of the mounts
#   host_volume "cairn-csi"   { path = "<nomad data_dir>/client/csi/node/cairn" }
# The last is the node plugin's mount_dir on the host, mounted at the same
# path (/csi) with bidirectional propagation: the staging paths the plugin
# passes are then the same in both containers, and the FUSE mounts made
# here reach the host, the plugin and the allocations. The docker plugin
# needs allow_privileged = true.

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "image" {
  type        = string
  default     = "cairn:latest"
  description = "the cairn image (docker build -t cairn:latest . in the repository)"
}

variable "holder" {
  type        = bool
  default     = true
  description = "hand the FUSE descriptors to cairn-fuse-holder (false: restarts break mounts)"
}

variable "run_volume" {
  type    = string
  default = "cairn-run"
}

variable "state_volume" {
  type    = string
  default = "cairn-state"
}

variable "csi_volume" {
  type    = string
  default = "cairn-csi"
}

variable "service_provider" {
  type        = string
  default     = "nomad"
  description = "nomad (native service discovery) or consul"
}

variable "security_var" {
  type        = string
  default     = ""
  description = "Nomad variable holding `cairn security init` output (see README.md); empty: plaintext"
}

locals {
  lookup    = var.service_provider == "consul" ? "service" : "nomadService"
  sec_files = var.security_var == "" ? {} : {
    "security.toml" = "security_toml", "ca.pem" = "ca_pem",
    "client.pem" = "client_pem", "client-key.pem" = "client_key_pem",
  }
  sec_args    = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
  holder_args = var.holder ? ["--holder", "/run/cairn/fuse-holder.sock"] : []
}

job "cairn-mount-service" {
  datacenters = var.datacenters
  type        = "system"
  priority    = 85

  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "3m"
  }

  group "mount-service" {
    volume "run" {
      type   = "host"
      source = var.run_volume
    }

    volume "state" {
      type   = "host"
      source = var.state_volume
    }

    volume "csi" {
      type   = "host"
      source = var.csi_volume
    }

    restart {
      attempts = 100
      interval = "1h"
      delay    = "2s"
      mode     = "delay"
    }

    network {
      port "metrics" {}
    }

    # The mounts' operation counts, cache hits and dirty bytes, for
    # Prometheus (monitoring/prometheus.yml keeps the cairn-* services).
    service {
      name     = "cairn-mount"
      provider = var.service_provider
      port     = "metrics"
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "5s"
      }
    }

    task "mount-service" {
      driver = "docker"

      volume_mount {
        volume      = "run"
        destination = "/run/cairn"
      }

      volume_mount {
        volume      = "state"
        destination = "/var/lib/cairn"
      }

      volume_mount {
        volume           = "csi"
        destination      = "/csi"
        propagation_mode = "bidirectional"
      }

      template {
        destination = "local/filers"
        change_mode = "noop"
        data        = "{{ range $i, $s := ${local.lookup} \"cairn-filer\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      config {
        image        = var.image
        network_mode = "host"
        privileged   = true
        devices = [
          { host_path = "/dev/fuse" },
        ]
        entrypoint = ["/bin/sh"]
        args = concat(["-c", <<-EOT
          filers=$(cat "$NOMAD_TASK_DIR/filers")
          if [ -z "$filers" ]; then
            echo "cairn-mount-service: no cairn-filer service registered yet; start the cairn filers first" >&2
            exit 1
          fi
          exec cairn mount-service --socket /run/cairn/mount.sock --filer "$filers" --state /var/lib/cairn/mounts.json --metrics-addr "$NOMAD_ADDR_metrics" "$@"
          EOT
        , "cairn-mount-service"], local.holder_args, local.sec_args)
      }

      dynamic "template" {
        for_each = local.sec_files
        content {
          destination = "secrets/cairn/${template.key}"
          perms       = "0600"
          change_mode = "noop"
          data        = "{{ with nomadVar \"${var.security_var}\" }}{{ index . \"${template.value}\" }}{{ end }}"
        }
      }

      # SIGTERM: flush every mount (all buffered writes become durable),
      # hand the FUSE connections to the holder and exit without unmounting.
      kill_signal  = "SIGTERM"
      kill_timeout = "120s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
