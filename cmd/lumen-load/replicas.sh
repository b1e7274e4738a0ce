#!/usr/bin/env bash
# Ingest through two replicas with every signal remote against one local
# Lumen, in one run. Backends on this machine: VictoriaMetrics (metrics),
# Loki (logs), Jaeger v2 on Badger (spans). For each signal in turn — spans
# (OTLP gRPC, 100 traces of 10 spans a request), samples (remote write
# 1.0, 2,000 a request), lines (Loki push, 1,000 a push) — the same load:
# at the local Lumen whole, then split in two halves sent at once, one to
# each replica (as a Service spreads connections; whole traces per
# request). Prints, per signal and mode: items/s taken, and for the
# replicas items/s end to end (until both replicas' queues are empty), and
# Lumen's CPU-seconds per million items (the two replicas' summed, until
# sent). Then the correlated answer's p50/p99 (LOOKUPS traces by id: spans,
# lines, metrics) from the local Lumen and from a replica (Jaeger, Loki and
# VictoriaMetrics behind it). Peers: `make vm-peer loki-peer jaeger-peer`.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
VM=${VM:-$PEERS/victoria-metrics-v1.140.0}
LOKI=${LOKI:-$PEERS/loki-v3.7.8}
JAEGER=${JAEGER:-$PEERS/jaeger-v1.76.0}
SPANS=${SPANS:-200000}
SAMPLES=${SAMPLES:-4000000}
LINES=${LINES:-1000000}
LOOKUPS=${LOOKUPS:-200}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
. cmd/lumen-load/serve-lumen.sh
. cmd/lumen-load/jaeger-config.sh
. cmd/lumen-load/loki-config.sh
echo "machine: $(nproc) cores; $SPANS spans, $SAMPLES samples, $LINES lines; $LOOKUPS correlated lookups"

cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
queued() { # http-addr... -> bytes in their queues
  local sum=0 q
  for a in "$@"; do
    q=$(curl -fs "http://$a/metrics" | awk '/^otelcol_exporter_queue_size/ { s += $2 } END { print s + 0 }')
    sum=$(echo "$sum + $q" | bc)
  done
  echo "$sum"
}
# load SIGNAL HTTP GRPC PID TOTAL extra… : one lumen-load run, its output.
load() {
  local signal=$1 http=$2 grpc=$3 pid=$4 total=$5; shift 5
  case $signal in
    traces) "$work/lumen-load" -signal traces -grpc "$grpc" -http "$http" -batch 1000 -spans-per-trace 10 -concurrency 4 \
      -total "$total" -duration 5m -pid "$pid" "$@" ;;
    metrics) "$work/lumen-load" -signal metrics -names 1 -http "$http" -series 100000 -total "$total" -batch 2000 -concurrency 4 \
      -duration 5m -pid "$pid" "$@" ;;
    logs) "$work/lumen-load" -signal logs -mix realistic -http "$http" -streams 100 -batch 1000 -concurrency 4 \
      -total "$total" -duration 5m -pid "$pid" -lookups 0 -logql-lookups 0 "$@" ;;
  esac | grep -v '^$'
}
count() { case $1 in traces) echo "$SPANS" ;; metrics) echo "$SAMPLES" ;; logs) echo "$LINES" ;; esac; }
taken() { awk '/^sent [0-9]+ / { for (i = 1; i <= NF; i++) if ($(i) ~ /\/s$/) { gsub(",", "", $(i-1)); s += $(i-1) } } END { printf "%.0f", s }' "$@"; }

echo "== one lumen, every signal local"
serve_on 143 "$work/local"
for s in traces metrics logs; do
  n=$(count $s)
  extra=(); [ $s = traces ] && extra=(-lookups "$LOOKUPS")
  load $s 127.0.0.1:14320 127.0.0.1:14317 $lumen "$n" "${extra[@]}" > "$work/$s.local"
  grep -E '^(sent|server CPU:|correlated)' "$work/$s.local" | sed "s/^/$s local: /"
done
kill $lumen; wait $lumen 2>/dev/null || true

echo "== two lumen replicas, every signal remote"
"$VM" -storageDataPath "$work/vm" -httpListenAddr 127.0.0.1:18428 -retentionPeriod 100y -loggerLevel ERROR &
vm=$!
mkdir -p "$work/loki" "$work/jaeger/keys" "$work/jaeger/values"
loki_config "$work/loki" > "$work/loki.yaml"
"$LOKI" -config.file "$work/loki.yaml" > "$work/loki.log" 2>&1 &
loki=$!
jaeger_config "$work/jaeger" > "$work/jaeger.yaml"
"$JAEGER" --config "$work/jaeger.yaml" > "$work/jaeger.log" 2>&1 &
jaeger=$!
ready http://127.0.0.1:18428/-/ready
ready http://127.0.0.1:13100/ready
ready http://127.0.0.1:23133/status
remote=(--metrics-backend remote --metrics-remote-write-url http://127.0.0.1:18428/api/v1/write --metrics-remote-query-url http://127.0.0.1:18428
  --logs-backend remote --logs-remote-push-url http://127.0.0.1:13100/loki/api/v1/push --logs-remote-query-url http://127.0.0.1:13100
  --traces-backend remote --traces-remote-otlp-url http://127.0.0.1:24318/v1/traces --traces-remote-query-url http://127.0.0.1:26686)
serve_on 143 "$work/r0" "${remote[@]}" --replica lumen-0; r0=$lumen
serve_on 153 "$work/r1" "${remote[@]}" --replica lumen-1; r1=$lumen
for s in traces metrics logs; do
  n=$(count $s)
  a0=$(cpu $r0); b0=$(cpu $r1); t0=$(date +%s.%N)
  load $s 127.0.0.1:15320 127.0.0.1:15317 $r1 $((n / 2)) $([ $s != metrics ] && echo -lookups 0) > "$work/$s.r1" &
  other=$!
  load $s 127.0.0.1:14320 127.0.0.1:14317 $r0 $((n / 2)) $([ $s != metrics ] && echo -lookups 0) > "$work/$s.r0"
  wait $other
  t1=$(date +%s.%N)
  for _ in $(seq 6000); do [ "$(queued 127.0.0.1:14320 127.0.0.1:15320)" = 0 ] && break; sleep 0.1; done
  t2=$(date +%s.%N); a1=$(cpu $r0); b1=$(cpu $r1)
  awk -v s=$s -v r="$(taken "$work/$s.r0" "$work/$s.r1")" -v c="$(echo "$a1 - $a0 + $b1 - $b0" | bc)" -v n="$n" \
    -v d="$(echo "$t2 - $t1" | bc)" -v e="$(echo "$t2 - $t0" | bc)" \
    'BEGIN { printf "%s 2 replicas: %s/s taken, %.0f/s end to end (queues empty %.1f s after the load); lumen %.2f CPU-seconds per million until sent (both replicas)\n", s, r, n / e, d, c / n * 1e6 }'
done
# The correlated answer from a replica: traces sent to it, every queue
# empty, then LOOKUPS lookups.
load traces 127.0.0.1:14320 127.0.0.1:14317 $r0 20000 -lookups "$LOOKUPS" -drain-queues -also-queues 127.0.0.1:15320 > "$work/lookups.r0"
grep -E '^correlated' "$work/lookups.r0" | sed 's/^/  2 replicas: /'
echo "backends CPU (whole run): victoria-metrics $(cpu $vm) s, loki $(cpu $loki) s, jaeger $(cpu $jaeger) s"
