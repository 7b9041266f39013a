# PostgreSQL on a cairn volume, exec flavour: Debian's postgresql-15
# package on the client, run as the volume's owner (the host's postgres
# user; create the volume from volumes/database.volume.hcl with its
# uid/gid). The first start runs initdb on the volume; later starts, on any
# node, find the data there.
#
# The superuser password comes from a Nomad variable:
#   nomad var put nomad/jobs/postgres password="$(openssl rand -base64 24)"
#   nomad job run postgres.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "volume_id" {
  type    = string
  default = "cairn-db"
}

variable "user" {
  type        = string
  default     = "postgres"
  description = "user PostgreSQL runs as: the owner of the volume's root"
}

variable "pg_bin" {
  type    = string
  default = "/usr/lib/postgresql/15/bin"
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
      port "db" { static = var.port }
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
      driver = "exec"
      user   = var.user

      volume_mount {
        volume      = "data"
        destination = "/srv/postgres"
      }

      template {
        destination = "secrets/postgres.env"
        env         = true
        change_mode = "noop"
        data        = "{{ with nomadVar \"${var.password_var}\" }}POSTGRES_PASSWORD={{ .password }}{{ end }}\n"
      }

      env {
        PGDATA = "/srv/postgres/pgdata"
        LC_ALL = "C"
      }

      config {
        command = "/bin/sh"
        args = ["-c", <<-EOT
          set -e
          if [ ! -s "$PGDATA/PG_VERSION" ]; then
            if [ -z "$POSTGRES_PASSWORD" ]; then
              echo "postgres: no password in the Nomad variable ${var.password_var} (item password); not initialising $PGDATA" >&2
              exit 1
            fi
            printf '%s\n' "$POSTGRES_PASSWORD" |
              '${var.pg_bin}/initdb' -D "$PGDATA" -U postgres --pwfile=/dev/stdin \
                --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C --data-checksums
            printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
          fi
          exec '${var.pg_bin}/postgres' -D "$PGDATA" \
            -c listen_addresses="$NOMAD_IP_db" -c port="$NOMAD_PORT_db" -c unix_socket_directories= \
            -c fsync=on -c synchronous_commit=on -c full_page_writes=on
          EOT
        ]
      }

      # SIGINT is PostgreSQL's fast shutdown: end sessions, write a
      # shutdown checkpoint, exit. The checkpoint flushes every dirty
      # buffer, so allow it time; a SIGKILL after kill_timeout means crash
      # recovery at the next start (nothing committed is lost).
      kill_signal  = "SIGINT"
      kill_timeout = "120s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
