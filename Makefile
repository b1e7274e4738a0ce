# Lumen: one binary for traces, logs and metrics.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/lumen
FUZZTIME  ?= 20s
BENCHTIME ?= 1x
PKGS      := ./...

.PHONY: tempo-peer loki-peer bench-logs-peers jaeger-peer bench-traces-peers logql-goldens jaeger-goldens promtool-peer prometheus-peer bench-rules rules-goldens vm-peer bench-metrics-peers bench-promql-peers bench-remote-metrics bench-remote-logs bench-remote-traces bench-remote-traces-tempo bench-replicas all build run test test-race vet fmt lint fuzz bench load clean ui ui-test image chaos

all: build

## build: the static lumen binary in bin/, with the web UI embedded
build: ui
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/lumen

## run: lumen serve with its defaults (data in ./data, UI and APIs on :4320, OTLP on :4317/:4318)
run: build
	./$(BIN) serve

## test: vet, formatting, the UI's type check and unit tests, the release
## build, the remote-write receiver compliance suite, and every Go test (fuzz
## seeds included; the browser test drives the embedded UI; the release
## binary is checked to be static; the conformance tests compare Lumen with
## goldens recorded from real Loki and Jaeger servers; the remote
## backends' tests run a real Loki, Jaeger, Tempo and VictoriaMetrics, built
## once per machine by loki-peer, jaeger-peer, tempo-peer and vm-peer); the
## conformance scores are printed at the end
## (docs/compatibility.md)
test: vet lint ui-test build loki-peer jaeger-peer tempo-peer vm-peer
	rm -rf bin/reports
	LUMEN_REPORT_DIR=$(CURDIR)/bin/reports $(MAKE) --no-print-directory compliance-rw
	LUMEN_LOKI=$(PEERS)/loki-$(LOKI_VERSION) LUMEN_JAEGER=$(PEERS)/jaeger-$(JAEGER_VERSION) LUMEN_TEMPO=$(PEERS)/tempo-$(TEMPO_VERSION) LUMEN_VICTORIA_METRICS=$(PEERS)/victoria-metrics-$(VM_VERSION) LUMEN_REPORT_DIR=$(CURDIR)/bin/reports $(GO) test -race -count=1 -timeout 20m $(PKGS)
	@echo "== conformance =="; cat bin/reports/*.txt 2>/dev/null || true

## chaos: the long chaos suite on the real server (RELIABILITY.md): 200
## kill -9 cycles under mixed load, a disk that fills (a tmpfs: needs
## root), 1M series and 100k streams of churn, a minute of overload with 64
## slow clients; `make test` runs the same tests short
chaos:
	LUMEN_CHAOS=long $(GO) test -count=1 -timeout 90m -run '^TestChaos' -v ./cmd/lumen/

## logql-goldens: the LogQL conformance goldens, from a real Loki built from
## its Go module into $(PEERS) (a test reference, never imported): the
## corpus is pushed to it and its answers to every query are recorded in
## internal/conformance/lokiconf/testdata/goldens.json, which `make test`
## compares Lumen's answers with
PEERS        ?= $(HOME)/.cache/lumen-peers
LOKI_VERSION := v3.7.8
logql-goldens:
	.ci/build-peer github.com/grafana/loki/v3 $(LOKI_VERSION) ./cmd/loki $(PEERS)/loki-$(LOKI_VERSION)
	$(GO) run ./internal/conformance/lokiconf/goldens -loki $(PEERS)/loki-$(LOKI_VERSION) -version "Loki $(LOKI_VERSION)"

## jaeger-goldens: the Jaeger query API conformance goldens, from a real
## Jaeger v2 built from its Go module into $(PEERS) (a test reference, never
## imported): the corpus is sent to it over OTLP and its answers to every
## query are recorded in internal/conformance/jaegerconf/testdata/goldens.json,
## which `make test` compares Lumen's answers with
JAEGER_VERSION := v1.76.0
jaeger-goldens:
	.ci/build-peer github.com/jaegertracing/jaeger $(JAEGER_VERSION) ./cmd/jaeger $(PEERS)/jaeger-$(JAEGER_VERSION)
	$(GO) run ./internal/conformance/jaegerconf/goldens -jaeger $(PEERS)/jaeger-$(JAEGER_VERSION) -version "Jaeger $(JAEGER_VERSION) (v2, in-memory storage)"

## promtool-peer: promtool from Prometheus v0.315.0 (Debian's 2.42 has no
## --http.config.file), which TestRealPrometheusWithTLSAndToken runs when it
## is built (~7 min); without it the test checks promtool's client code
PROMETHEUS_VERSION := v0.315.0
promtool-peer:
	.ci/build-peer github.com/prometheus/prometheus $(PROMETHEUS_VERSION) ./cmd/promtool $(PEERS)/promtool-$(PROMETHEUS_VERSION)

## compliance-rw: the Prometheus remote-write receiver compliance suite (a
## test reference, never imported) against lumen serve on loopback: the
## suite's test binary is built from the module proxy into
## $(COMPLIANCE_CACHE) once, lumen is built and started with a temporary
## data dir, and the run prints "remote-write receiver compliance: N passed,
## M failed, K skipped of T"; it fails on a failing test that
## ingest/promrw/testdata/compliance-known-failures.txt does not list
COMPLIANCE_CACHE ?= $(HOME)/.cache/lumen-compliance
RW_COMPLIANCE    := github.com/prometheus/compliance/remotewrite/receiver@v0.0.0-20260806071727-67b8327a2e93
.PHONY: compliance-rw
compliance-rw:
	$(GO) run ./internal/conformance/rwcompliance -go $(GO) -suite $(RW_COMPLIANCE) -cache $(COMPLIANCE_CACHE) \
		-known ingest/promrw/testdata/compliance-known-failures.txt

## third-party: regenerate third_party/ristretto, the file layer Badger maps
## its files through, with every file reserved before it is written
## (docs/decisions.md), from the module proxy and third_party/ristretto.patch
.PHONY: third-party
third-party:
	./third_party/sync-ristretto

## image: the container image (deploy/Dockerfile), where a Docker engine runs
image:
	@command -v docker >/dev/null || { echo "make image needs docker"; exit 1; }
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t lumen:$(VERSION) .

## ui: the web UI's npm packages (pinned by ui/package-lock.json) and its
## bundle in ui/web/dist, which the next go build embeds
ui: ui/node_modules/.package-lock.json
	cd ui && node build.mjs

ui/node_modules/.package-lock.json: ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund

## ui-test: TypeScript's check of the UI and its unit tests (node --test)
ui-test: ui
	cd ui && ./node_modules/.bin/tsc --noEmit -p . && node build.mjs --tests && node --test test-out/

## test-race: the tests under the race detector
test-race:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

## vet: go vet; in store/ and internal/promremote/ (which implement Prometheus'
## chunkenc.Iterator) without the stdmethods check, which takes its method
## Seek(int64) ValueType for a malformed io.Seeker
vet:
	$(GO) vet $$($(GO) list $(PKGS) | grep -v -e '/store$$' -e '/internal/promremote$$')
	$(GO) vet -stdmethods=false ./store/ ./internal/promremote/

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './ui/node_modules/*')

## lint: fails when a file is not gofmt-formatted
lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './ui/node_modules/*')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## fuzz: every fuzz target for FUZZTIME each
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseTraceID$$' -fuzztime $(FUZZTIME) ./internal/model/
	$(GO) test -run '^$$' -fuzz '^FuzzTraceIndexKey$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameDecode$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzSpanFrame$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzSearchPostings$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzWALRecord$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzWALSegment$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrames$$' -fuzztime $(FUZZTIME) ./store/wlog/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRules$$' -fuzztime $(FUZZTIME) ./query/ruler/
	$(GO) test -run '^$$' -fuzz '^FuzzServiceSeriesJSON$$' -fuzztime $(FUZZTIME) ./query/
	$(GO) test -run '^$$' -fuzz '^FuzzRemoteWrite$$' -fuzztime $(FUZZTIME) ./ingest/promrw/
	$(GO) test -run '^$$' -fuzz '^FuzzV1MatchesPrometheusHandler$$' -fuzztime $(FUZZTIME) ./ingest/promrw/
	$(GO) test -run '^$$' -fuzz '^FuzzDecimalChunk$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzLogBlock$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzLogWALRecord$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzDetect$$' -fuzztime $(FUZZTIME) ./ingest/logfields/
	$(GO) test -run '^$$' -fuzz '^FuzzWordLevel$$' -fuzztime $(FUZZTIME) ./ingest/logfields/
	$(GO) test -run '^$$' -fuzz '^FuzzTrain$$' -fuzztime $(FUZZTIME) ./query/drain/
	$(GO) test -run '^$$' -fuzz '^FuzzScanner$$' -fuzztime $(FUZZTIME) ./internal/logfmtscan/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeProto$$' -fuzztime $(FUZZTIME) ./ingest/loki/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePushMatchesLoki$$' -fuzztime $(FUZZTIME) ./ingest/loki/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./ingest/loki/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResult$$' -fuzztime $(FUZZTIME) ./query/lokiremote/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJaeger$$' -fuzztime $(FUZZTIME) ./query/traceremote/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCatalog$$' -fuzztime $(FUZZTIME) ./query/traceremote/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeTempo$$' -fuzztime $(FUZZTIME) ./query/traceremote/
	$(GO) test -run '^$$' -fuzz '^FuzzFromLine$$' -fuzztime $(FUZZTIME) ./internal/logids/
	$(GO) test -run '^$$' -fuzz '^FuzzTraceRequest$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./internal/sendq/
	$(GO) test -run '^$$' -fuzz '^FuzzSplitTracesRecord$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeProgress$$' -fuzztime $(FUZZTIME) ./cmd/lumen/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./query/logql/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./query/traceql/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCRI$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDocker$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzPodFromPath$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./agent/

## bench: the Go benchmarks, in benchstat's format (bench.txt)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./store/ | tee bench.txt

## load: spans/s through OTLP gRPC into a running lumen serve (see BENCHMARKS.md)
load:
	$(GO) run ./cmd/lumen-load $(LOADFLAGS)

## bench-rules: 1,000 recording rules over 100k live series, Lumen beside
## Prometheus (the peer from prometheus-peer when built), ~10 minutes
bench-rules:
	cmd/lumen-load/rules-bench.sh

## rules-goldens: /api/v1/rules and /api/v1/alerts of Prometheus v0.315.0
## (built by prometheus-peer) over a rule file and a scraped target, in
## cmd/lumen/testdata/rules-api/, which `make test` compares Lumen's with
rules-goldens: prometheus-peer
	LUMEN_RULES_GOLDENS=$(PEERS)/prometheus-$(PROMETHEUS_VERSION) $(GO) test -count=1 -run '^TestRulesAPIMatchesPrometheus$$' ./cmd/lumen/

## vm-peer: VictoriaMetrics v1.140.0 built from its Go module into $(PEERS)
## (a benchmark reference, never imported)
VM_VERSION := v1.140.0
vm-peer:
	.ci/build-peer github.com/VictoriaMetrics/VictoriaMetrics $(VM_VERSION) ./app/victoria-metrics $(PEERS)/victoria-metrics-$(VM_VERSION)

## jaeger-peer: Jaeger v1.76.0 (v2) built from its Go module into
## $(PEERS), for bench-traces-peers
jaeger-peer:
	.ci/build-peer github.com/jaegertracing/jaeger $(JAEGER_VERSION) ./cmd/jaeger $(PEERS)/jaeger-$(JAEGER_VERSION)

## bench-traces-peers: OTLP trace ingest into Lumen and Jaeger (Badger)
## alternately, then trace-by-id right after and again after IDLE
## (cmd/lumen-load/peers-traces.sh; TOTAL, DURATION, LOOKUPS, ROUNDS, IDLE)
bench-traces-peers: jaeger-peer
	cmd/lumen-load/peers-traces.sh

## tempo-peer: Tempo built from its Go module into $(PEERS), for the tests
## of a traces backend that speaks Tempo's API (a commit of 2025-05-29, the
## newest the module proxy serves: its v2 tags are not served)
TEMPO_VERSION := v1.5.1-0.20250529124718-87c2dc380cec
tempo-peer:
	.ci/build-peer github.com/grafana/tempo $(TEMPO_VERSION) ./cmd/tempo $(PEERS)/tempo-$(TEMPO_VERSION)

## loki-peer: Loki v3.7.8 built from its Go module into $(PEERS), for
## bench-logs-peers
loki-peer:
	.ci/build-peer github.com/grafana/loki/v3 $(LOKI_VERSION) ./cmd/loki $(PEERS)/loki-$(LOKI_VERSION)

## bench-logs-peers: Loki push ingest into Lumen and Loki alternately, then
## a trace's lines by LogQL and by Lumen's index (cmd/lumen-load/peers-logs.sh;
## TOTAL, DURATION, MIX, ROUNDS, LOOKUPS, COMPRESSIONS)
bench-logs-peers: loki-peer
	cmd/lumen-load/peers-logs.sh

## bench-metrics-peers: remote-write ingest into Lumen, VictoriaMetrics and
## Prometheus alternately, the same load, then PromQL latency after it and
## idle (cmd/lumen-load/peers-metrics.sh; ROUNDS, NAMES, IDLE, RUNS)
bench-metrics-peers: vm-peer prometheus-peer
	cmd/lumen-load/peers-metrics.sh

## bench-promql-peers: PromQL answers evaluated afresh (no results cache)
## in Lumen with promql.direct_evaluation on and off, and in
## VictoriaMetrics, over the same remote-write load
## (cmd/lumen-load/promql-direct.sh; SERIES, TOTAL, ROUNDS, RUNS)
bench-promql-peers: vm-peer
	cmd/lumen-load/promql-direct.sh

## bench-remote-metrics: metrics ingest with metrics kept locally and in a
## remote backend (VictoriaMetrics), every acknowledged sample counted there
bench-remote-metrics: vm-peer
	cmd/lumen-load/remote-metrics.sh

## bench-remote-logs: logs ingest with lines kept locally and in Loki,
## every acknowledged line counted there; the correlated answer's lines
## from the store's index and from Loki
bench-remote-logs: loki-peer
	cmd/lumen-load/remote-logs.sh

## bench-remote-traces: trace ingest with spans kept locally and in Jaeger
## v2; traces by id and the correlated answer from each
bench-remote-traces: jaeger-peer
	cmd/lumen-load/remote-traces.sh

## bench-remote-traces-tempo: the same with a single-binary Tempo behind
## Lumen
bench-remote-traces-tempo: tempo-peer
	BACKEND=tempo cmd/lumen-load/remote-traces.sh

## bench-replicas: spans, samples and lines through two replicas with
## every signal remote (VictoriaMetrics, Loki, Jaeger) against one local
## Lumen; the correlated answer from each
bench-replicas: vm-peer loki-peer jaeger-peer
	cmd/lumen-load/replicas.sh

## prometheus-peer: Prometheus v0.315.0 built from its Go module into
## $(PEERS) (a test and benchmark reference, never imported)
prometheus-peer:
	GOWORK=off .ci/build-peer github.com/prometheus/prometheus $(PROMETHEUS_VERSION) ./cmd/prometheus $(PEERS)/prometheus-$(PROMETHEUS_VERSION)

clean:
	rm -rf bin bench.txt ui/test-out test-results
	find ui/web/dist -mindepth 1 -not -name .keep -delete
