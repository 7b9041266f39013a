# cairn-server: master, volume server and filer in one process on one node
# (`cairn server`), for small and test setups. Replication is 000 (one copy):
# use the cairn-master/volume/filer jobs for a replicated cluster.
# raw_exec flavour: the cairn binary must be on the client at var.cairn_bin.
#
#   nomad job run -var data_dir=/srv/cairn cairn-server.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "cairn_bin" {
  type        = string
  default     = "/usr/local/bin/cairn"
  description = "path of the cairn binary on the client"
}

variable "data_dir" {
  type        = string
  default     = "/var/lib/cairn/server"
  description = "host directory for the master, volume and filer data"
}

variable "master_port" {
  type    = number
  default = 9333
}

variable "volume_port" {
  type    = number
  default = 8080
}

variable "filer_port" {
  type    = number
  default = 8888
}

variable "service_provider" {
  type        = string
  default     = "nomad"
  description = "where services are registered: nomad (native service discovery) or consul"
}

variable "security_var" {
  type        = string
  default     = ""
  description = "Nomad variable holding `cairn security init` output (see README.md); empty: plaintext"
}

locals {
  sec_roles = ["master", "volume", "filer"]
  sec_files = var.security_var == "" ? {} : merge(
    { "security.toml" = "security_toml", "ca.pem" = "ca_pem" },
    { for r in local.sec_roles : "${r}.pem" => "${r}_pem" },
    { for r in local.sec_roles : "${r}-key.pem" => "${r}_key_pem" },
  )
  sec_args   = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
  check_type = var.security_var == "" ? "http" : "tcp"
  services = {
    "cairn-master"       = { port = "master", check = local.check_type }
    "cairn-master-grpc"  = { port = "master_grpc", check = "tcp" }
    "cairn-volume"       = { port = "volume", check = local.check_type }
    "cairn-volume-grpc"  = { port = "volume_grpc", check = "tcp" }
    "cairn-filer"        = { port = "filer", check = local.check_type }
    "cairn-filer-grpc"   = { port = "filer_grpc", check = "tcp" }
  }
}

job "cairn-server" {
  datacenters = var.datacenters
  type        = "service"

  group "server" {
    count = 1

    # gRPC is the HTTP port + 10000 and Raft + 20000: cairn's convention,
    # so the ports are static.
    network {
      port "master" { static = var.master_port }
      port "master_grpc" { static = var.master_port + 10000 }
      port "master_raft" { static = var.master_port + 20000 }
      port "volume" { static = var.volume_port }
      port "volume_grpc" { static = var.volume_port + 10000 }
      port "filer" { static = var.filer_port }
      port "filer_grpc" { static = var.filer_port + 10000 }
      port "filer_raft" { static = var.filer_port + 20000 }
    }

    dynamic "service" {
      for_each = local.services
      content {
        name     = service.key
        provider = var.service_provider
        port     = service.value.port
        dynamic "check" {
          for_each = service.value.check == "http" ? ["http"] : []
          content {
            type     = "http"
            path     = "/readyz"
            interval = "10s"
            timeout  = "5s"
          }
        }
        dynamic "check" {
          for_each = service.value.check == "tcp" ? ["tcp"] : []
          content {
            type     = "tcp"
            interval = "10s"
            timeout  = "5s"
          }
        }
      }
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.cairn_bin
        args = concat([
          "server", "--dir", var.data_dir, "--ip", "${NOMAD_IP_master}",
          "--master.port", "${NOMAD_PORT_master}",
          "--volume.port", "${NOMAD_PORT_volume}",
          "--filer.port", "${NOMAD_PORT_filer}",
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

      # SIGTERM: stop taking requests, flush, close the Raft logs.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
