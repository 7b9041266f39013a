# cairn-volume: a volume server (needle store) on every client (system job).
# raw_exec flavour: the cairn binary must be on every client at
# var.cairn_bin and the volume files live in var.data_dir on the host.
# Restrict it to storage nodes with a constraint if not every client has disks.
#
#   nomad job run -var data_dir=/srv/cairn/volume -var max=100 cairn-volume.nomad.hcl

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
  default     = "/var/lib/cairn/volume"
  description = "host directory holding the volume files"
}

variable "port" {
  type    = number
  default = 8080
}

variable "max" {
  type        = number
  default     = 8
  description = "most volumes (of up to 1 GiB each) this server holds"
}

variable "rack" {
  type        = string
  default     = "$${meta.rack}"
  description = "rack of the server for replica placement (default: the client's meta.rack)"
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
    "volume.pem" = "volume_pem", "volume-key.pem" = "volume_key_pem",
  }
  sec_args   = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
  check_type = var.security_var == "" ? "http" : "tcp"
}

job "cairn-volume" {
  datacenters = var.datacenters
  type        = "system"

  update {
    max_parallel     = 1
    min_healthy_time = "30s"
    healthy_deadline = "5m"
  }

  group "volume" {
    network {
      port "http" { static = var.port }
      port "grpc" { static = var.port + 10000 }
    }

    service {
      name     = "cairn-volume"
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
      name     = "cairn-volume-grpc"
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

    task "volume" {
      driver = "raw_exec"

      template {
        destination = "local/masters.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
        data        = "CAIRN_MASTERS={{ range $i, $s := ${local.lookup} \"cairn-master\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      config {
        command = var.cairn_bin
        args = concat([
          "volume", "--dir", var.data_dir, "--ip", "$${NOMAD_IP_http}", "--port", "$${NOMAD_PORT_http}",
          "--master", "$${CAIRN_MASTERS}", "--dc", "$${node.datacenter}", "--rack", var.rack,
          "--max", "${var.max}",
        ], local.sec_args)
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

      # SIGTERM: the volume server finishes in-flight writes (each fsynced
      # before it is acknowledged) and closes its volume files.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
