# vmconv — the two commands a newcomer runs are `make demo` and `make test`.

GO      ?= go
BIN     ?= bin/vmconv
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build demo test test-kvm test-short fuzz bench vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vmconv

# The main job on a built-in example: a sample disk through every format and back.
demo: build
	./scripts/demo.sh $(BIN)

# The whole suite. Tests that need a tool skip when it is missing, unless
# VMCONV_REQUIRE_TOOLS is set (.ci/run sets it), which makes them fail.
# The packages that boot guests in the built-in machine run last, alone.
KVM_PKGS := ./vmm ./cmd/vmconv
test:
	$(GO) vet ./...
	$(GO) test -timeout 20m $$($(GO) list ./... | grep -v -x -e '.*/vmconv/vmm' -e '.*/vmconv/cmd/vmconv')
	$(MAKE) test-kvm

# The tests that need KVM, in the KVM lab where this host has no
# hardware-backed /dev/kvm (see README, Tests), one package at a time.
test-kvm:
	$(GO) test -p 1 -timeout 30m $(KVM_PKGS)

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
