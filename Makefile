# LiveEngine. `make run` and `make test` install what is missing themselves.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/liveengine
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Tests run with the race detector; the suite's deadline is generous for a
# loaded 2-core machine, each package has its own bound well inside it.
TEST_TIMEOUT ?= 30m
TEST_FLAGS ?= -race -count=1

.PHONY: all deps build run test test-short bench fuzz vet fmt clean browser-check

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/liveengine

run: build
	./$(BIN) all -config configs/liveengine.yaml

test: deps
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

test-short: deps
	$(GO) test -count=1 -short ./...

# Fuzz each parser for a short while (the seed corpora also run in `make test`).
FUZZTIME ?= 30s
fuzz: deps
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$spec || exit 1; \
	  done; \
	done

# Tried as a new user would, in headless Chromium: hls.js, the WHEP and WHIP
# pages, a three-tab call, chat and gifts (scripts/browser/check.js). Not
# part of `test`.
browser-check: build
	@bash scripts/browser/run.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./engine/
	@echo "Scenario benches: ./$(BIN) bench -h (see README, Benchmarks)"

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
