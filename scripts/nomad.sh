#!/usr/bin/env bash
# Print the path of a Nomad 1.6.1 binary, building it once per machine when
# it is missing. Nomad is not a Debian package; the Go module proxy serves
# its source but hides the version list, so `go install ...@v1.6.1` fails.
# Building from the downloaded module works once the ./api replace (the api
# module is not in the zip) points at the api module of the same release.
#
# The binary is cached outside the clone:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cairn/nomad-1.6.1/nomad
# A build in progress elsewhere on the machine is waited for (flock), never
# done twice.
set -euo pipefail

version=1.6.1
api=github.com/hashicorp/nomad/api@v0.0.0-20230721134942-515895c7690c
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cairn/nomad-$version"
bin="$cache/nomad"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi
command -v go >/dev/null || { echo "nomad.sh: go is needed to build Nomad $version" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi

echo "nomad.sh: building Nomad $version into $bin (a few minutes the first time)" >&2
dir=$(go mod download -json "github.com/hashicorp/nomad@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -d "$dir" ] || { echo "nomad.sh: go mod download of nomad v$version gave no source directory" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
GOFLAGS= go mod edit -replace "github.com/hashicorp/nomad/api=$api"
GOFLAGS= CGO_ENABLED=${CGO_ENABLED:-1} go build -mod=mod -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
"$bin" version >&2
echo "$bin"
