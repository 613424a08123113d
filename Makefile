GO ?= go
BIN := bin
LDFLAGS := -s -w
export CGO_ENABLED ?= 0

.PHONY: all build test bench demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/arv-upload ./cmd/arv-server

# -race needs cgo; everything else builds without it.
test:
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -timeout 9m ./...

# Go benchmarks (engine, keepclient, keepstore, proxy), then end-to-end
# uploads through a dev cluster compared with md5sum of the same data.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./...
	./scripts/bench.sh

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)
