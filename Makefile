# tether: make is the interface. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
FUZZTIME ?= 3s
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
# Every package of the workspace (go.work): tether's module and the
# harness's (bench, cmd/tether-bench, e2e), which "./..." would leave out.
PKGS := github.com/tether-lb/tether/...

.PHONY: help build test test-allocs test-deploy unit e2e fuzz-short fuzz bench compare soak scale-out lint cover ci demo clean

#? help: list the targets
help:
	@grep -E '^#\? ' $(MAKEFILE_LIST) | sed 's/^#? /  /'

#? build: build bin/tether and bin/tether-bench
build:
	$(GO) build -o $(BIN)/tether ./cmd/tether
	$(GO) build -o $(BIN)/tether-bench ./cmd/tether-bench

#? test: vet, gofmt check, go test -race on every package of the workspace (end-to-end tests included), the allocation tests without -race, the deployment checks (test-deploy), and a short run of every fuzz target
test: build
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	TETHER_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory test-allocs
	$(MAKE) --no-print-directory test-deploy
	$(MAKE) --no-print-directory fuzz-short

#? test-allocs: the allocation tests (built without -race, which allocates on its own): the hot path allocates nothing
test-allocs:
	$(GO) test -count=1 -run 'Allocs$$' $$($(GO) list $(PKGS) | grep -v /e2e)

#? test-deploy: deploy/kubernetes decoded strictly into Kubernetes' API types and checked against tether (flags, ports, probes, started on loopback); deploy/Containerfile's build gives a static binary (its own Go module, outside the workspace: cd deploy/kubernetes/validate && GOWORK=off go test)
test-deploy:
	cd deploy/kubernetes/validate && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 -timeout 15m ./...

#? fuzz-short: run each fuzz target of every package that has one for FUZZTIME (default 3s); a failure that left no crasher in testdata (the fuzzing engine itself, on a loaded machine) is retried once
fuzz-short:
	@set -e; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/tether-fuzz.out 2>&1; then \
	      if [ -n "$$(git status --porcelain -- $$pkg/testdata/fuzz/$$t 2>/dev/null)" ]; then cat /tmp/tether-fuzz.out; exit 1; fi; \
	      echo "  no crasher recorded; once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	    fi; \
	  done; done

#? fuzz: run each fuzz target for FUZZTIME (set FUZZTIME=5m for a real session)
fuzz: fuzz-short

#? bench: Go benchmarks of each stage, with allocations (-benchmem)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 $(PKGS)

#? compare: tether beside nginx and HAProxy (and a node alone) on loopback; prints the Markdown table of BENCHMARKS.md
compare: build
	bash scripts/compare.sh

#? soak: a long mixed load through tether with the nodes failing and coming back in turn (SOAK=10m, FLIP=60s); fails on leaked sessions, descriptors, goroutines or RSS growth
SOAK ?= 10m
soak: build
	bash scripts/soak.sh $(SOAK)

#? scale-out: HAProxy (TCP, PROXY protocol v2, /healthz checks) in front of two tethers, a mixed and a long-poll load through it, kill -9 of one tether mid-run; reports reconnect times, errors and where (DURATION=20, KILL_AT=8 seconds)
scale-out: build
	bash scripts/scale-out.sh

#? lint: go vet and staticcheck
lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

#? cover: test coverage per package
cover: build
	TETHER_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -cover $(PKGS)

#? ci: what .ci/run calls
ci: test

#? demo: two fake nodes and tether on loopback, a short mixed load, a per-node report
demo: build
	bash scripts/demo.sh

#? clean: remove built binaries
clean:
	rm -rf $(BIN)
