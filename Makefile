# vmconv — the two commands a newcomer runs are `make demo` and `make test`.

GO      ?= go
BIN     ?= bin/vmconv
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
# The libdeflate grain inflater where its header is installed (Debian:
# libdeflate-dev); TAGS= builds the pure-Go binary.
TAGS    ?= $(shell echo '\#include <libdeflate.h>' | $${CC:-cc} -E -x c - >/dev/null 2>&1 && echo libdeflate)

.PHONY: build demo test test-kvm test-short fuzz bench vet clean

build:
	$(GO) build -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vmconv

# The main job on a built-in example: a sample disk through every format and back.
demo: build
	./scripts/demo.sh $(BIN)

# The whole suite. Tests that need a tool skip when it is missing, unless
# VMCONV_REQUIRE_TOOLS is set (.ci/run sets it), which makes them fail.
# The tests that boot guests in the built-in machine run last, alone.
test:
	$(GO) vet ./...
	$(GO) test -timeout 30m -skip '^TestLabScripts$$' $$($(GO) list ./... | grep -v -x '.*/vmconv/vmm')
	$(MAKE) test-kvm

# The tests that need KVM, in the KVM lab where this host has no
# hardware-backed /dev/kvm (see README, Tests), one package at a time so
# that nothing else competes for the cores while a nested guest boots.
test-kvm:
	$(GO) test -timeout 20m ./vmm
	$(GO) test -timeout 40m -run '^TestLabScripts$$' ./cmd/vmconv

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
