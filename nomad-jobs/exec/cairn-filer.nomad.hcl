# cairn-filer: the filers (one Raft group for the POSIX namespace), one per
# node (distinct_hosts). raw_exec flavour: the cairn binary must be on every
# client at var.cairn_bin and the data lives in var.data_dir on the host.
#
# Peers as for cairn-master: each filer registers cairn-filer before its
# task starts, and a filer with no state yet waits until all var.count
# filers are registered before bootstrapping the Raft group. The masters
# are found through the cairn-master service.
#
#   nomad job run -var count=3 -var data_dir=/srv/cairn/filer cairn-filer.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "cairn_bin" {
  type    = string
  default = "/usr/local/bin/cairn"
}

variable "data_dir" {
  type        = string
  default     = "/var/lib/cairn/filer"
  description = "host directory for the Raft log, snapshots and namespace state"
}

variable "count" {
  type        = number
  default     = 3
  description = "filers in the Raft group (3 or 5); one per node"
}

variable "port" {
  type    = number
  default = 8888
}

variable "http_api" {
  type        = string
  default     = "read-write"
  description = "the filer's HTTP API: off, read-only or read-write"
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
    "filer.pem" = "filer_pem", "filer-key.pem" = "filer_key_pem",
  }
  sec_args   = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
  check_type = var.security_var == "" ? "http" : "tcp"
}

job "cairn-filer" {
  datacenters = var.datacenters
  type        = "service"

  constraint {
    operator = "distinct_hosts"
    value    = "true"
  }

  update {
    max_parallel     = 1
    min_healthy_time = "30s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "filer" {
    count = var.count

    network {
      port "http" { static = var.port }
      port "grpc" { static = var.port + 10000 }
      port "raft" { static = var.port + 20000 }
    }

    service {
      name     = "cairn-filer"
      provider = var.service_provider
      port     = "http"
      # /readyz over plain HTTP; with mutual TLS a TCP check (Nomad's
      # checks cannot present a client certificate).
      dynamic "check" {
        for_each = local.check_type == "http" ? ["http"] : []
        content {
          type     = "http"
          path     = "/readyz"
          interval = "10s"
          timeout  = "5s"
        }
      }
      dynamic "check" {
        for_each = local.check_type == "tcp" ? ["tcp"] : []
        content {
          type     = "tcp"
          interval = "10s"
          timeout  = "5s"
        }
      }
    }

    service {
      name     = "cairn-filer-grpc"
      provider = var.service_provider
      port     = "grpc"
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "5s"
      }
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    task "filer" {
      driver = "raw_exec"

      template {
        destination = "local/peers"
        change_mode = "noop"
        data        = "{{ range $i, $s := ${local.lookup} \"cairn-filer\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      # A filer reads the master list once; restart it when masters move.
      template {
        destination = "local/masters.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
        data        = "CAIRN_MASTERS={{ range $i, $s := ${local.lookup} \"cairn-master\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      config {
        command = "/bin/sh"
        args = concat(["-c", <<-EOT
          dir='${var.data_dir}'
          mkdir -p "$dir"
          while :; do
            peers=$(cat "$NOMAD_TASK_DIR/peers")
            n=$(printf '%s' "$peers" | tr ',' '\n' | grep -c .)
            if [ "$n" -ge ${var.count} ] || [ -n "$(ls -A "$dir")" ]; then break; fi
            echo "cairn-filer: $n of ${var.count} filers registered ($peers); waiting for all of them before bootstrapping the Raft group" >&2
            sleep 5
          done
          if [ -z "$CAIRN_MASTERS" ]; then
            echo "cairn-filer: no cairn-master service registered yet; start the cairn-master job first" >&2
            exit 1
          fi
          exec '${var.cairn_bin}' filer --dir "$dir" --ip "$NOMAD_IP_http" --port "$NOMAD_PORT_http" \
            --peers "$peers" --master "$CAIRN_MASTERS" --http-api '${var.http_api}' "$@"
          EOT
        , "cairn-filer"], local.sec_args)
      }

      dynamic "template" {
        for_each = local.sec_files
        content {
          destination   = "secrets/cairn/${template.key}"
          perms         = "0600"
          change_mode   = "signal"
          change_signal = "SIGHUP"
          data          = "{{ with nomadVar \"${var.security_var}\" }}{{ index . \"${template.value}\" }}{{ end }}"
        }
      }

      # SIGTERM: the filer finishes in-flight commands and closes its Raft log.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
