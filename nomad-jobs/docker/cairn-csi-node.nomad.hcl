# cairn-csi-node: the CSI node plugin on every client (system job). It holds
# no mount itself: it asks cairn-mount-service to mount volumes and
# bind-mounts them into allocations, so it can be restarted or upgraded at
# any time. docker flavour: privileged (bind mounts), with the sockets'
# host volume (host_volume "cairn-run" { path = "/run/cairn" }); the docker
# plugin needs allow_privileged = true.

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "image" {
  type        = string
  default     = "cairn:latest"
  description = "the cairn image (docker build -t cairn:latest . in the repository)"
}

variable "plugin_id" {
  type    = string
  default = "cairn"
}

variable "run_volume" {
  type    = string
  default = "cairn-run"
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
  lookup = var.service_provider == "consul" ? "service" : "nomadService"
  sec_files = var.security_var == "" ? {} : {
    "security.toml" = "security_toml", "ca.pem" = "ca_pem",
    "client.pem"    = "client_pem", "client-key.pem" = "client_key_pem",
  }
  sec_args = var.security_var == "" ? [] : ["--security", "$${NOMAD_SECRETS_DIR}/cairn/security.toml"]
}

job "cairn-csi-node" {
  datacenters = var.datacenters
  type        = "system"
  priority    = 80

  group "node" {
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

    network {
      port "metrics" {}
    }

    # Prometheus scrapes the plugin's call counts and latencies here
    # (monitoring/prometheus.yml keeps the cairn-* services).
    service {
      name     = "cairn-csi"
      provider = var.service_provider
      port     = "metrics"
      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "5s"
      }
    }

    task "plugin" {
      driver = "docker"

      csi_plugin {
        id        = var.plugin_id
        type      = "node"
        mount_dir = "/csi"
      }

      volume_mount {
        volume      = "run"
        destination = "/run/cairn"
      }

      template {
        destination = "local/filers.env"
        env         = true
        change_mode = "restart"
        data        = "CAIRN_FILERS={{ range $i, $s := ${local.lookup} \"cairn-filer\" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}\n"
      }

      # The endpoint is $CSI_ENDPOINT, set by Nomad (under mount_dir).
      config {
        image        = var.image
        network_mode = "host"
        privileged   = true
        args = concat([
          "csi", "--mode", "node", "--metrics-addr", "$${NOMAD_ADDR_metrics}", "--nodeid", "$${node.unique.name}",
          "--filer", "$${CAIRN_FILERS}", "--mount-socket", "/run/cairn/mount.sock",
        ], local.sec_args)
      }

      dynamic "template" {
        for_each = local.sec_files
        content {
          destination = "secrets/cairn/${template.key}"
          perms       = "0600"
          change_mode = "restart"
          data        = "{{ with nomadVar \"${var.security_var}\" }}{{ index . \"${template.value}\" }}{{ end }}"
        }
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
