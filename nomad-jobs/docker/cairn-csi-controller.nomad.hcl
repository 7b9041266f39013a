# cairn-csi-controller: the CSI controller plugin (create, delete, expand
# volumes, snapshots). Stateless: everything lives in the filers; two
# instances so that one may be restarted at any time.
# docker flavour: unprivileged; the image is built from the repository's
# Dockerfile.

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

variable "count" {
  type    = number
  default = 2
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

job "cairn-csi-controller" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 80

  group "controller" {
    count = var.count

    restart {
      attempts = 100
      interval = "1h"
      delay    = "5s"
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
        type      = "controller"
        mount_dir = "/csi"
      }

      template {
        destination = "local/cluster.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          CAIRN_FILERS={{ range $i, $s := ${local.lookup} "cairn-filer" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}
          CAIRN_MASTERS={{ range $i, $s := ${local.lookup} "cairn-master" }}{{ if $i }},{{ end }}{{ $s.Address }}:{{ $s.Port }}{{ end }}
          EOT
      }

      config {
        image        = var.image
        network_mode = "host"
        args = concat([
          "csi", "--mode", "controller", "--metrics-addr", "$${NOMAD_ADDR_metrics}", "--filer", "$${CAIRN_FILERS}", "--master", "$${CAIRN_MASTERS}",
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
