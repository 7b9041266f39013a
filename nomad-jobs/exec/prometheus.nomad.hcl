# Prometheus with its TSDB on a cairn volume, exec flavour: Debian's
# prometheus package on the client, run as nobody (the owner of the volume
# made from volumes/prometheus.volume.hcl). It scrapes the cairn servers it
# finds through Nomad's service discovery.
#
#   nomad volume create prometheus.volume.hcl
#   nomad job run prometheus.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "volume_id" {
  type    = string
  default = "cairn-prometheus"
}

variable "prometheus_bin" {
  type    = string
  default = "/usr/bin/prometheus"
}

variable "port" {
  type    = number
  default = 9090
}

variable "retention" {
  type    = string
  default = "30d"
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

locals {
  lookup = var.service_provider == "consul" ? "service" : "nomadService"
}

job "prometheus" {
  datacenters = var.datacenters
  type        = "service"

  group "prometheus" {
    count = 1

    network {
      port "http" { static = var.port }
    }

    volume "tsdb" {
      type            = "csi"
      source          = var.volume_id
      access_mode     = "single-node-writer"
      attachment_mode = "file-system"
    }

    service {
      name     = "prometheus"
      provider = var.service_provider
      port     = "http"
      check {
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "5s"
      }
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "10s"
      mode     = "delay"
    }

    task "prometheus" {
      driver = "exec"
      user   = "nobody"

      volume_mount {
        volume      = "tsdb"
        destination = "/prometheus"
      }

      template {
        destination   = "local/prometheus.yml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data = join("", concat(
          ["global:\n  scrape_interval: 30s\nscrape_configs:\n"],
          [for svc in ["cairn-master", "cairn-volume", "cairn-filer"] :
            "  - job_name: ${svc}\n    static_configs:\n      - targets: [{{ range $i, $s := ${local.lookup} \"${svc}\" }}{{ if $i }}, {{ end }}'{{ $s.Address }}:{{ $s.Port }}'{{ end }}]\n"
          ],
        ))
      }

      config {
        command = var.prometheus_bin
        args = [
          "--config.file=$${NOMAD_TASK_DIR}/prometheus.yml",
          "--storage.tsdb.path=/prometheus",
          "--storage.tsdb.retention.time=${var.retention}",
          "--web.listen-address=$${NOMAD_ADDR_http}",
        ]
      }

      # SIGTERM: Prometheus stops scraping, and closes the TSDB (the head
      # block's WAL is already on the volume). Compaction of a large head
      # can take a while.
      kill_signal  = "SIGTERM"
      kill_timeout = "120s"

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
