#!/usr/bin/env bash
# PromQL evaluation beside VictoriaMetrics, answers computed afresh: the
# same remote-write load (SERIES series, TOTAL samples, 15-s steps from the
# past, all named http_requests_total) into Lumen and into
# VictoriaMetrics, then lumen-load -signal promql (a rate summed by job over
# every series and over 250 of them, instant and 30-min range at a 60-s
# step, RUNS runs each, p50 and p99). Lumen runs without its results cache
# (every answer evaluated), restarted on the same data ROUNDS times with
# promql.direct_evaluation on and off in turn; VictoriaMetrics with
# -search.disableCache. Peers: `make vm-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
VM=${VM:-$PEERS/victoria-metrics-v1.140.0}
SERIES=${SERIES:-100000}
TOTAL=${TOTAL:-24000000}
ROUNDS=${ROUNDS:-2}
RUNS=${RUNS:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
echo "machine: $(nproc) cores; load: $SERIES series, $TOTAL samples, 2000 per request, 4 senders"

serve() { # direct(true|false)
  printf 'promql:\n  direct_evaluation: %s\n' "$1" > "$work/lumen.yml"
  "$work/lumen" serve --config "$work/lumen.yml" --data-dir "$work/lumen-data" --http-addr 127.0.0.1:14320 \
    --otlp-grpc-addr 127.0.0.1:14317 --otlp-http-addr 127.0.0.1:14318 --log-level warn --retention 0 \
    --disk-reserve-bytes 0 --promql-results-cache-bytes 0 &
  pid=$!
  for _ in $(seq 900); do curl -fs http://127.0.0.1:14320/-/ready > /dev/null 2>&1 && break; sleep 0.1; done
}

mkdir -p "$work/lumen-data"
serve true
echo "== lumen: load"
"$work/lumen-load" -signal metrics -names 1 -http 127.0.0.1:14320 -series "$SERIES" -total "$TOTAL" -batch 2000 \
  -concurrency 4 -duration 10m -pid "$pid" | grep -v '^$'
kill $pid; wait $pid 2>/dev/null || true

for r in $(seq "$ROUNDS"); do
  for direct in true false; do
    serve "$direct"
    echo "== lumen, direct_evaluation $direct (round $r), results cache off"
    "$work/lumen-load" -signal promql -http 127.0.0.1:14320 -query-runs "$RUNS" -duration 5m
    kill $pid; wait $pid 2>/dev/null || true
  done
done

mkdir -p "$work/vm-data"
"$VM" -storageDataPath "$work/vm-data" -httpListenAddr 127.0.0.1:18428 -retentionPeriod 100y -loggerLevel ERROR \
  -search.disableCache &
pid=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:18428/-/ready > /dev/null 2>&1 && break; sleep 0.1; done
echo "== victoria-metrics: load"
"$work/lumen-load" -signal metrics -names 1 -http 127.0.0.1:18428 -series "$SERIES" -total "$TOTAL" -batch 2000 \
  -concurrency 4 -duration 10m -pid "$pid" | grep -v '^$'
curl -fs http://127.0.0.1:18428/internal/force_flush > /dev/null
for r in $(seq "$ROUNDS"); do
  echo "== victoria-metrics (round $r), its caches off"
  "$work/lumen-load" -signal promql -http 127.0.0.1:18428 -query-runs "$RUNS" -duration 5m
done
