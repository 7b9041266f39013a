# cairn — build, run, test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
DATA     ?= $(CURDIR)/data
MNT      ?= $(CURDIR)/mnt
PKGS     := ./...

.PHONY: all build run test test-short bench lint fuzz crash-campaign model-campaign proto clean nomad nomad-e2e

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cairn ./cmd/cairn

# The embedded default: master and volume server on this machine, data in ./data.
run: build
	@echo "Starting cairn on 127.0.0.1 (master :9333, volume :8080, filer :8888), data in $(DATA), mounted at $(MNT). Ctrl-C stops it."
	@mkdir -p $(MNT)
	./bin/cairn server --dir $(DATA) --mount $(MNT)

# Every test: unit, conformance, fuzz seeds, crash and kill tests on real processes.
test: build lint
	CAIRN_BIN=$(CURDIR)/bin/cairn $(GO) test -race -count=1 -timeout 40m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# The long kill campaign: many SIGKILL cycles against a 3+3 cluster.
crash-campaign: build
	CAIRN_BIN=$(CURDIR)/bin/cairn CAIRN_KILL_CYCLES=$${CAIRN_KILL_CYCLES:-200} \
		$(GO) test -count=1 -timeout 4h -run 'TestKillCycles' -v ./internal/e2e/

# The filer state's randomized model tests (make test runs 20 seeds of
# 500 operations each) with more and longer seeds: 60 seeds of 1000 took
# 2 minutes on 2 cores.
model-campaign:
	CAIRN_FILER_SEEDS=$${CAIRN_FILER_SEEDS:-200} CAIRN_FILER_OPS=$${CAIRN_FILER_OPS:-1000} \
		$(GO) test -count=1 -timeout 2h -run 'TestModel' ./filer/

# A Nomad 1.6.1 binary, built once per machine into
# ${XDG_CACHE_HOME:-$HOME/.cache}/cairn/nomad-1.6.1/nomad (see docs/nomad.md).
nomad:
	@./scripts/nomad.sh

# The shipped jobspecs on a real Nomad agent (part of make test as well):
# validation of every jobspec and volume spec, then the end-to-end test.
nomad-e2e: build
	CAIRN_BIN=$(CURDIR)/bin/cairn $(GO) test -count=1 -timeout 40m -v -run 'TestJobspecsValidate|TestNomadEndToEnd' ./internal/nomade2e/

# Fuzz every decoder for a while (FUZZTIME each).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./internal/fid/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRecord -fuzztime $(FUZZTIME) ./volume/
	$(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME) ./master/
	$(GO) test -run '^$$' -fuzz FuzzSliceList -fuzztime $(FUZZTIME) ./filer/
	$(GO) test -run '^$$' -fuzz FuzzPendingTable -fuzztime $(FUZZTIME) ./fuse/

# Benchmarks, reported as ratios against local-disk baselines from the same run.
bench: build
	@command -v fio >/dev/null || { apt-get install -y -qq fio >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq fio; } || echo "fio not installed: its baseline is skipped"; }
	./scripts/bench-core.sh
	./scripts/bench-filer.sh
	./scripts/bench-mount.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

proto:
	cd internal/pb && protoc -I. --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative cairn.proto filer.proto raftadmin.proto

clean:
	rm -rf bin
