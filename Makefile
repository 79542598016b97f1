# vmconv — the two commands a newcomer runs are `make demo` and `make test`.

GO      ?= go
BIN     ?= bin/vmconv
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build demo test test-short fuzz bench vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vmconv

# The main job on a built-in example: a sample disk through every format and back.
demo: build
	./scripts/demo.sh $(BIN)

# The whole suite. Tests that need a tool skip when it is missing, unless
# VMCONV_REQUIRE_TOOLS is set (.ci/run sets it), which makes them fail.
test:
	$(GO) vet ./...
	$(GO) test -timeout 20m ./...

test-short:
	$(GO) test -short ./...

# Fuzz every target for FUZZTIME each (corpora live in each package's testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench: build
	./bench/convert.sh

clean:
	rm -rf bin
