# tlsedge: `make demo` runs it, `make test` tests it (what CI runs).
GO       ?= go
BIN      ?= bin/tlsedge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 60s

.PHONY: all build demo test unit e2e soak fuzz fuzz-short bench compare compare-terminate vet fmt lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tlsedge

# A self-contained demo on 127.0.0.1:8443: throwaway PKI, demo mTLS servers,
# the balancer, and openssl/curl lines to paste.
demo: build
	./$(BIN) demo

# Everything CI runs: formatting, vet, unit tests and e2e with -race, and a
# short fuzz of the ClientHello parser.
test: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 10m ./...
	$(MAKE) fuzz-short

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -race -count=1 -v ./e2e

# WebSockets held open for SOAK (default 5m) through terminate and reencrypt.
SOAK ?= 5m
soak:
	TLSEDGE_SOAK=$(SOAK) $(GO) test -race -count=1 -timeout 30m -run WebSocket -v ./e2e

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReadHello -fuzztime=$(FUZZTIME) ./tlsmode

fuzz-short:
	$(GO) test -run='^$$' -fuzz=FuzzReadHello -fuzztime=10s ./tlsmode

# Go benchmarks: ClientHello parsing, server picking, passthrough vs direct.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./tlsmode ./affinity ./edge

# Side by side with HAProxy on this machine (installs haproxy when missing):
# passthrough (throughput, handshakes, echo), and terminate with client
# certificates (keep-alive requests, full-handshake connections).
compare:
	bash cmd/tlsedge-load/compare.sh

compare-terminate:
	bash cmd/tlsedge-load/compare-terminate.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin
