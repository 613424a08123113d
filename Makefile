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

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./...

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)
