# cairn-mount-service: on every client that runs the node plugin, the
# process that hosts the FUSE mounts of CSI volumes (docs/csi.md). The node
# plugin asks it over var.socket to mount a volume at the staging path.
# With var.holder_socket (the default), its /dev/fuse descriptors are kept
# by cairn-fuse-holder, so rolling this job to a new version is invisible to
# applications, and a crash of it is survived (Linux 6.9 and later; see
# docs/csi.md, "Restarts"); start cairn-fuse-holder first. Without a holder
# (holder_socket = ""), a restart of this job breaks the mounts of running
# allocations: only upgrade it on a drained node then.
# raw_exec flavour: runs as root (FUSE with allow_other); the cairn binary
# must be on every client at var.cairn_bin.

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
  default     = "/run/cairn/mount.sock"
  description = "unix socket the mount service serves the node plugin on"
}

variable "holder_socket" {
  type        = string
  default     = "/run/cairn/fuse-holder.sock"
  description = "socket of cairn-fuse-holder on the node (empty: no holder; restarts break mounts)"
}

variable "state_file" {
  type        = string
  default     = "/var/lib/cairn/mounts.json"
  description = "record of the mounts, restored at the next start"
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
  holder_args = var.holder_socket == "" ? [] : ["--holder", var.holder_socket]
}

job "cairn-mount-service" {
  datacenters = var.datacenters
  type        = "system"
  priority    = 85

  # One node at a time; with the holder each restart is a hand-over.
  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "3m"
  }

  group "mount-service" {
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
      driver = "raw_exec"

      # The filer list is read at start only (noop): restarting the mount
      # service because a filer moved is not worth it, it tries every filer
      # it knows.
      template {
        destination = "local/filers"
        change_mode = "noop"
        data        = "{{ range $i, $s := ${local.lookup} \"cairn-filer\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      config {
        command = "/bin/sh"
        args = concat(["-c", <<-EOT
          filers=$(cat "$NOMAD_TASK_DIR/filers")
          if [ -z "$filers" ]; then
            echo "cairn-mount-service: no cairn-filer service registered yet; start the cairn filers first" >&2
            exit 1
          fi
          exec '${var.cairn_bin}' mount-service --socket '${var.socket}' --filer "$filers" --state '${var.state_file}' --metrics-addr "$NOMAD_ADDR_metrics" "$@"
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
