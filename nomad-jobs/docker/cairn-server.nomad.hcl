# cairn-server: master, volume server and filer in one process on one node
# (`cairn server`), for small and test setups. Replication is 000 (one copy):
# use the cairn-master/volume/filer jobs for a replicated cluster.
# docker flavour: the image is built from the repository's Dockerfile; the
# data lives on the client's host volume var.host_volume (client config:
# host_volume "cairn-server" { path = "/srv/cairn/server" }).
#
#   nomad job run -var image=registry.example/cairn:1.0 cairn-server.nomad.hcl

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
  default     = "cairn-server"
  description = "client host volume for the master, volume and filer data"
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

    task "server" {
      driver = "docker"

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      config {
        image        = var.image
        network_mode = "host"
        args = concat([
          "server", "--dir", "/data", "--ip", "${NOMAD_IP_master}",
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
