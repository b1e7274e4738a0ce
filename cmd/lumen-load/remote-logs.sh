#!/usr/bin/env bash
# Logs ingest with lines kept locally and in Loki, in one run: the same
# Loki push load (TOTAL lines at most, for at most DURATION: snappy
# protobuf, 1,000 lines per push over 10 of 100 streams, 4 senders, the
# realistic mix, a trace id in about one line in six) at Lumen with its own
# store, then at Lumen with storage.logs.backend remote in front of Loki
# (single binary, this machine, as in peers-logs.sh). Each prints lines/s
# and Lumen's CPU-seconds per million lines; the remote run also the time
# its queue took to empty after the load, Lumen's and Loki's CPU up to
# then, and checks that Loki holds every line. Then, in both, LOOKUPS
# correlated answers of traces known from their lines
# (/api/v1/traces/{id}?include=logs: the store's trace-id index locally,
# `{service_name=~".+"} | trace_id="…"` over trace_lookback in Loki — these
# traces have no spans) and LogQL lookups through Lumen's Loki API.
# Peer: `make loki-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
LOKI=${LOKI:-$PEERS/loki-v3.7.8}
TOTAL=${TOTAL:-3000000}
DURATION=${DURATION:-70s}
LOOKUPS=${LOOKUPS:-100}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
. cmd/lumen-load/loki-config.sh
echo "machine: $(nproc) cores; load: at most $TOTAL lines or $DURATION, realistic mix, 1000 per push over 10 of 100 streams, 4 senders"

. cmd/lumen-load/serve-lumen.sh
load() { # pid extra-flags...
  local pid=$1; shift
  "$work/lumen-load" -signal logs -mix realistic -http 127.0.0.1:14320 -streams 100 -batch 1000 -concurrency 4 \
    -total "$TOTAL" -duration "$DURATION" -pid "$pid" -lookups "$LOOKUPS" -logql-lookups 5 "$@" | grep -v '^$'
}

echo "== lumen, logs local"
serve "$work/local"
load $lumen | tee "$work/out"
kill $lumen; wait $lumen 2>/dev/null || true

echo "== lumen, logs remote (loki behind it)"
mkdir -p "$work/loki"
loki_config "$work/loki" > "$work/loki.yaml"
"$LOKI" -config.file "$work/loki.yaml" > "$work/loki.log" 2>&1 &
loki=$!
ready http://127.0.0.1:13100/ready
serve "$work/remote" --logs-backend remote --logs-remote-push-url http://127.0.0.1:13100/loki/api/v1/push \
  --logs-remote-query-url http://127.0.0.1:13100
load $lumen -drain-queues -backend-pid $loki | tee "$work/out"
sent=$(awk '/^sent /{print $2}' "$work/out")
stored=$(curl -fs http://127.0.0.1:13100/loki/api/v1/query --data-urlencode 'query=sum(count_over_time({service_name=~".+"}[24h]))' \
  | sed -E 's/.*"value":\[[^,]*,"([0-9.e+]*)".*/\1/')
echo "lines in loki: $stored of $sent sent"
curl -fs http://127.0.0.1:14320/metrics | grep -E '^otelcol_exporter_(sent|send_failed)_log_records_total' || true
