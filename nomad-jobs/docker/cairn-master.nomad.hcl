# cairn-master: the masters (one Raft group for topology and file ids), one
# per node (distinct_hosts). docker flavour: the image is built from the repository's
# Dockerfile; the data lives on the client's host volume var.host_volume.
#
# The masters find each other through service discovery: each registers
# cairn-master before its task starts, and a master with no state yet waits
# until all var.count masters are registered, so that every member
# bootstraps the Raft group with the same, complete peer list. A master
# that already has state starts at once (the list only matters at bootstrap).
#
#   nomad job run -var count=3 -var image=registry.example/cairn:1.0 cairn-master.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "image" {
  type        = string
  default     = "cairn:latest"
  description = "the cairn image (docker build -t cairn:latest . in the repository)"
}

variable "host_volume" {
  type        = string
  default     = "cairn-master"
  description = "client host volume: host directory for the Raft log, snapshots and state"
}

variable "count" {
  type        = number
  default     = 3
  description = "masters in the Raft group (3 or 5); one per node"
}

variable "port" {
  type    = number
  default = 9333
}

variable "replication" {
  type        = string
  default     = "001"
  description = "default replica placement xyz for writes that name none"
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
    "master.pem" = "master_pem", "master-key.pem" = "master_key_pem",
  }
  sec_args   = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
  check_type = var.security_var == "" ? "http" : "tcp"
}

job "cairn-master" {
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

  group "master" {
    count = var.count

    network {
      port "http" { static = var.port }
      port "grpc" { static = var.port + 10000 }
      port "raft" { static = var.port + 20000 }
    }

    # Group services are registered before the task starts: the peer list
    # below can see every master, the starting ones included.
    service {
      name     = "cairn-master"
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
      name     = "cairn-master-grpc"
      provider = var.service_provider
      port     = "grpc"
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "5s"
      }
    }

    volume "data" {
      type   = "host"
      source = var.host_volume
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    task "master" {
      driver = "docker"

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        destination = "local/peers"
        change_mode = "noop"
        data        = "{{ range $i, $s := ${local.lookup} \"cairn-master\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      config {
        image        = var.image
        network_mode = "host"
        entrypoint   = ["/bin/sh"]
        args = concat(["-c", <<-EOT
          dir=/data
          mkdir -p "$dir"
          while :; do
            peers=$(cat "$NOMAD_TASK_DIR/peers")
            n=$(printf '%s' "$peers" | tr ',' '\n' | grep -c .)
            if [ "$n" -ge ${var.count} ] || [ -n "$(ls -A "$dir")" ]; then break; fi
            echo "cairn-master: $n of ${var.count} masters registered ($peers); waiting for all of them before bootstrapping the Raft group" >&2
            sleep 5
          done
          exec cairn master --dir "$dir" --ip "$NOMAD_IP_http" --port "$NOMAD_PORT_http" \
            --peers "$peers" --default-replication '${var.replication}' "$@"
          EOT
        , "cairn-master"], local.sec_args)
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

      # SIGTERM: the master closes its Raft log and snapshot store cleanly.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
