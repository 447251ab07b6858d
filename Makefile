# 7awel backend. `make run` starts the API on a private PostgreSQL; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
OVERLAY ?= me-central1

.PHONY: build run test test-short vet fmt-check test-crdb bench k8s docker rules-test clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/7awel .

run: build
	./bin/7awel serve

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: fmt-check vet
	$(GO) test -race -count=1 ./...

test-short:
	$(GO) test -short ./...

# The storage and HTTP suites against a real multi-region CockroachDB (COCKROACH_URL) whose
# regions are me-central1, eu-west1 and us-east1 (README: a `cockroach demo --demo-locality`
# line). Skips with a message when COCKROACH_URL is unset; it cannot run on this machine.
test-crdb:
	@if [ -z "$$COCKROACH_URL" ]; then echo "test-crdb: COCKROACH_URL is not set; skipping (CockroachDB cannot run on this machine)"; exit 0; fi
	TEST_DATABASE_URL="$$COCKROACH_URL" $(GO) test -count=1 ./storage/... ./server/...

# Load benchmark (loadtest/bench/README.md): pgbench's transfer scripts, then the API's uniform and hot
# scenarios at the same 16 clients on this machine; prints the ratios and writes loadtest/RESULTS.md.
BENCH_SECONDS ?= 20
BENCH_PAIRS ?= 3
bench: build
	BENCH_SECONDS=$(BENCH_SECONDS) BENCH_PAIRS=$(BENCH_PAIRS) $(GO) run ./loadtest/bench -server bin/7awel -out loadtest/RESULTS.md

k8s:
	$(GO) run ./k8s/render $(OVERLAY)

docker:
	docker build --build-arg VERSION=$(VERSION) -t 7awel/wallet:$(VERSION) .

rules-test:
	$(GO) run github.com/prometheus/prometheus/cmd/promtool@v0.316.0 test rules k8s/monitoring/rules_test.yml

clean:
	rm -rf bin
