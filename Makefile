GO ?= go
BIN := bin
LDFLAGS := -s -w
export CGO_ENABLED ?= 0

.PHONY: all build test fuzz bench demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/arv-upload ./cmd/arv-server

# -race needs cgo; everything else builds without it.
test:
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -timeout 12m ./...

# Every fuzz target for FUZZTIME each (`make fuzz FUZZTIME=5m`). A failing
# input is written to the package's testdata/fuzz/<target>/, where `make
# test` runs it from then on with the seeds.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./internal/apiserver:FuzzReadParams ./internal/apiserver:FuzzServeHTTP \
	./internal/keepstore:FuzzPutHash ./internal/keepstore:FuzzRequestHeaders ./internal/keepstore:FuzzServeHTTP \
	./internal/proxy:FuzzServeHTTP \
	./internal/store:FuzzRecordCodec \
	./arvados:FuzzValidateManifest ./arvados:FuzzNormalize

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Go benchmarks of every package but agent (arvados, keepclient, keepstore, proxy,
# ...), then scripts/bench.sh: one table of the machine's limits (md5sum,
# fsync and O_DIRECT write speed), every upload path through a dev cluster
# and the engine alone (agent's benchmarks, medians), compared with md5sum
# of the same data. BIN=other/bin scripts/bench.sh measures other binaries.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m $$($(GO) list ./... | grep -v '/agent$$')
	./scripts/bench.sh

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)
