#!/usr/bin/env bash
# Trace ingest and trace-by-id beside Jaeger, in one run: Lumen and Jaeger
# (v2, Badger storage, no batch processor, so that an acknowledged span is
# stored as in Lumen) each alone on a fresh data dir take the same OTLP
# load from lumen-load (PROTOCOL=grpc, the default, or http: OTLP/HTTP
# protobuf) (TOTAL spans at most, for at most DURATION: 100
# traces of 10 spans per request, 4 senders), alternated ROUNDS times; each
# prints spans/s, the server's CPU-seconds per million spans, its peak RSS,
# its bytes on disk per span right after the load (and its bytes after a
# clean stop, Badger's memtables and logs settled), then LOOKUPS trace-by-id requests right after
# the load through the Jaeger API (Lumen's /jaeger/api/traces/{id},
# Jaeger's /api/traces/{id}) and, for Lumen, its correlated answer, and
# again after IDLE (default 20s) with the server idle. Peer:
# `make jaeger-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
JAEGER=${JAEGER:-$PEERS/jaeger-v1.76.0}
TOTAL=${TOTAL:-1000000}
DURATION=${DURATION:-3m}
LOOKUPS=${LOOKUPS:-200}
ROUNDS=${ROUNDS:-1}
IDLE=${IDLE:-20s}
PROTOCOL=${PROTOCOL:-grpc}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
echo "machine: $(nproc) cores; load: OTLP $PROTOCOL, at most $TOTAL spans or $DURATION, 1000 per request (100 traces x 10), 4 senders; $LOOKUPS lookups after"

load() { # name grpc http pid dir jaeger-url ready-url correlated otlp-http
  echo "== $1 (OTLP $PROTOCOL)"
  local via=()
  if [ "$PROTOCOL" = http ]; then via=(-otlp-http "$9"); fi
  "$work/lumen-load" "${via[@]}" -grpc "$2" -http "$3" -batch 1000 -spans-per-trace 10 -concurrency 4 -total "$TOTAL" -duration "$DURATION" \
    -pid "$4" -disk "$5" -lookups "$LOOKUPS" -idle "$IDLE" -jaeger-url "$6" -ready-url "$7" -correlated="$8" | grep -v '^$'
}

# jaeger_config DIR: Jaeger v2 with Badger in DIR, OTLP on 127.0.0.1:24317
# (gRPC) and :24318 (HTTP), its query API on :26686.
. cmd/lumen-load/jaeger-config.sh

after() { # dir
  local b
  b=$(du -sB1 "$1" | cut -f1)
  echo "after a clean stop: $b bytes on disk"
}

for r in $(seq "$ROUNDS"); do
  rm -rf "$work/d" && mkdir -p "$work/d"
  "$work/lumen" serve --data-dir "$work/d" --http-addr 127.0.0.1:14320 --otlp-grpc-addr 127.0.0.1:14317 \
    --otlp-http-addr 127.0.0.1:14318 --log-level warn --disk-reserve-bytes 0 &
  pid=$!
  load "lumen (round $r)" 127.0.0.1:14317 127.0.0.1:14320 $pid "$work/d" http://127.0.0.1:14320/jaeger/api/traces/ http://127.0.0.1:14320/-/ready true 127.0.0.1:14318
  kill $pid; wait $pid 2>/dev/null || true
  after "$work/d"

  rm -rf "$work/d" && mkdir -p "$work/d/keys" "$work/d/values"
  jaeger_config "$work/d" > "$work/jaeger.yaml"
  "$JAEGER" --config "$work/jaeger.yaml" > "$work/jaeger.log" 2>&1 &
  pid=$!
  load "jaeger (round $r, Badger)" 127.0.0.1:24317 127.0.0.1:26686 $pid "$work/d" http://127.0.0.1:26686/api/traces/ http://127.0.0.1:23133/status false 127.0.0.1:24318 \
    || { tail -20 "$work/jaeger.log"; exit 1; }
  kill $pid; wait $pid 2>/dev/null || true
  after "$work/d"
done
