# PostgreSQL on a cairn volume, docker flavour: the official postgres image,
# run as its postgres user (999:999), the owner the shipped
# volumes/database.volume.hcl gives the volume's root. The image's
# entrypoint runs initdb on the first start; later starts, on any node,
# find the data on the volume.
#
# The superuser password comes from a Nomad variable:
#   nomad var put nomad/jobs/postgres password="$(openssl rand -base64 24)"
#   nomad job run postgres.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "image" {
  type    = string
  default = "postgres:15"
}

variable "volume_id" {
  type    = string
  default = "cairn-db"
}

variable "user" {
  type        = string
  default     = "999:999"
  description = "uid:gid PostgreSQL runs as: the owner of the volume's root"
}

variable "port" {
  type    = number
  default = 5432
}

variable "password_var" {
  type        = string
  default     = "nomad/jobs/postgres"
  description = "Nomad variable whose item `password` is the postgres superuser's password"
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

job "postgres" {
  datacenters = var.datacenters
  type        = "service"

  group "db" {
    count = 1

    network {
      port "db" {
        static = var.port
        to     = 5432
      }
    }

    volume "data" {
      type            = "csi"
      source          = var.volume_id
      access_mode     = "single-node-writer"
      attachment_mode = "file-system"
    }

    service {
      name     = "postgres"
      provider = var.service_provider
      port     = "db"
      check {
        type     = "tcp"
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

    task "postgres" {
      driver = "docker"
      user   = var.user

      volume_mount {
        volume      = "data"
        destination = "/var/lib/postgresql/data"
      }

      template {
        destination = "secrets/postgres.env"
        env         = true
        change_mode = "noop"
        data        = "{{ with nomadVar \"${var.password_var}\" }}POSTGRES_PASSWORD={{ .password }}{{ end }}\n"
      }

      env {
        PGDATA               = "/var/lib/postgresql/data/pgdata"
        POSTGRES_INITDB_ARGS = "--data-checksums"
      }

      config {
        image = var.image
        ports = ["db"]
        args  = ["-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"]
      }

      # SIGINT is PostgreSQL's fast shutdown: end sessions, write a
      # shutdown checkpoint, exit. Allow the checkpoint time; a SIGKILL
      # after kill_timeout means crash recovery at the next start (nothing
      # committed is lost).
      kill_signal  = "SIGINT"
      kill_timeout = "120s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
