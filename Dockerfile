# cairn: one static binary in a small Debian image.
#
#   docker build -t cairn:latest .
#   docker build --build-arg VERSION=1.0.0 -t registry.example/cairn:1.0.0 .
#
# The same image runs every role (server, master, volume, filer, csi,
# mount-service, fuse-holder, shell): the entrypoint is the cairn binary.
# fuse3 gives fusermount3 (unmounting FUSE mounts), util-linux gives mount
# and umount (the node plugin's bind mounts), ca-certificates lets the
# binary verify public endpoints.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cairn ./cmd/cairn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends fuse3 util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/cairn /usr/local/bin/cairn
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["--help"]
