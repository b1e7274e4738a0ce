#!/usr/bin/env bash
# Metrics ingest beside the peers, in one run: Lumen, VictoriaMetrics and
# Prometheus, each alone on a fresh data dir, take the same remote-write
# load from lumen-load (SERIES series, TOTAL samples, 2,000 per request, 4
# senders, 15-s steps from the past), alternated ROUNDS times; each line
# gives samples/s, the server's CPU-seconds per million samples, its peak
# RSS and its bytes on disk per sample (VictoriaMetrics and Prometheus
# flushed first; Lumen without its disk reserve, a 96-MiB file of free
# space kept for a full disk, which is not data). Then PromQL latency
# (lumen-load -signal promql: a rate by job over all series and over 250 of
# them, instant and 30-min range) right after the load and again after
# IDLE seconds idle. The series are NAMES metric names (1: all are
# http_requests_total, as the queries expect). Peers: `make vm-peer
# prometheus-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
VM=${VM:-$PEERS/victoria-metrics-v1.140.0}
PROM=${PROM:-$PEERS/prometheus-v0.315.0}
SERIES=${SERIES:-100000}
TOTAL=${TOTAL:-4000000}
ROUNDS=${ROUNDS:-1}
NAMES=${NAMES:-1}
IDLE=${IDLE:-20}
RUNS=${RUNS:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
echo "machine: $(nproc) cores; load: $SERIES series ($NAMES metric names), $TOTAL samples, 2000 per request, 4 senders"

load() { # name addr pid dir
  echo "== $1"
  "$work/lumen-load" -signal metrics -names "$NAMES" -http "$2" -series "$SERIES" -total "$TOTAL" -batch 2000 -concurrency 4 -duration 5m -pid "$3" -disk "$4" \
    | grep -v '^$'
  if [ "$NAMES" = 1 ]; then
    echo "-- PromQL right after the load"
    "$work/lumen-load" -signal promql -http "$2" -query-runs "$RUNS" -duration 5m
    sleep "$IDLE"
    echo "-- PromQL after ${IDLE} s idle"
    "$work/lumen-load" -signal promql -http "$2" -query-runs "$RUNS" -duration 5m
  fi
}

after() { # dir what
  local b
  b=$(du -sB1 "$1" | cut -f1)
  echo "$2: $b bytes on disk, $(awk -v b="$b" -v n="$TOTAL" 'BEGIN { printf "%.2f", b / n }') bytes per sample"
}

for r in $(seq "$ROUNDS"); do
  rm -rf "$work/d" && mkdir -p "$work/d"
  "$work/lumen" serve --data-dir "$work/d" --http-addr 127.0.0.1:14320 --otlp-grpc-addr 127.0.0.1:14317 \
    --otlp-http-addr 127.0.0.1:14318 --log-level warn --retention 0 --disk-reserve-bytes 0 &
  pid=$!
  load "lumen (round $r)" 127.0.0.1:14320 $pid "$work/d"
  kill $pid; wait $pid 2>/dev/null || true
  after "$work/d" "after a clean stop (heads written, WAL truncated)"

  rm -rf "$work/d" && mkdir -p "$work/d"
  "$VM" -storageDataPath "$work/d" -httpListenAddr 127.0.0.1:18428 -retentionPeriod 100y -loggerLevel ERROR &
  pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:18428/-/ready > /dev/null 2>&1 && break; sleep 0.1; done
  load "victoria-metrics (round $r, before its flush)" 127.0.0.1:18428 $pid "$work/d"
  curl -fs http://127.0.0.1:18428/internal/force_flush > /dev/null
  after "$work/d" "after /internal/force_flush"
  kill $pid; wait $pid 2>/dev/null || true

  rm -rf "$work/d" && mkdir -p "$work/d"
  printf 'global: {}\n' > "$work/prometheus.yml"
  "$PROM" --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/d" --web.listen-address 127.0.0.1:19090 \
    --web.enable-remote-write-receiver --log.level warn &
  pid=$!
  load "prometheus (round $r, head and WAL)" 127.0.0.1:19090 $pid "$work/d"
  kill $pid; wait $pid 2>/dev/null || true
  after "$work/d" "after a clean stop (head in its WAL and chunks_head)"
done
