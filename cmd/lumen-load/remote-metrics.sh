#!/usr/bin/env bash
# Metrics ingest with metrics kept locally and in a remote backend, in one
# run: the same remote-write load (SERIES series, TOTAL samples, 2,000 a
# request, 4 senders) at Lumen with its own store, then at Lumen with
# storage.metrics.backend remote in front of VictoriaMetrics (the backend
# on this machine too). For the remote run it prints Lumen's CPU-seconds
# per million samples up to the moment its queue is empty (every sample
# sent), the backend's, the time the queue took to drain after the load,
# and checks that the backend holds every sample. Peer: `make vm-peer`.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
VM=${VM:-$PEERS/victoria-metrics-v1.140.0}
SERIES=${SERIES:-100000}
TOTAL=${TOTAL:-24000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
echo "machine: $(nproc) cores; load: remote write 1.0, $SERIES series, $TOTAL samples, 2000 a request, 4 senders"

cpu() { # pid -> CPU-seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
. cmd/lumen-load/serve-lumen.sh
load() { # addr pid
  "$work/lumen-load" -signal metrics -names 1 -http "$1" -series "$SERIES" -total "$TOTAL" -batch 2000 -concurrency 4 \
    -duration 10m -pid "$2" | grep -v '^$'
}

echo "== lumen, metrics local"
serve "$work/local"
load 127.0.0.1:14320 $lumen
kill $lumen; wait $lumen 2>/dev/null || true

echo "== lumen, metrics remote (victoria-metrics behind it)"
"$VM" -storageDataPath "$work/vm" -httpListenAddr 127.0.0.1:18428 -retentionPeriod 100y -loggerLevel ERROR &
vm=$!
ready http://127.0.0.1:18428/-/ready
serve "$work/remote" --metrics-backend remote --metrics-remote-write-url http://127.0.0.1:18428/api/v1/write \
  --metrics-remote-query-url http://127.0.0.1:18428
l0=$(cpu $lumen); v0=$(cpu $vm); t0=$(date +%s.%N)
load 127.0.0.1:14320 $lumen
t1=$(date +%s.%N)
for _ in $(seq 6000); do
  q=$(curl -fs http://127.0.0.1:14320/metrics | awk '/^otelcol_exporter_queue_size/ { print $2 }')
  [ "${q:-1}" = 0 ] && break
  sleep 0.1
done
t2=$(date +%s.%N); l1=$(cpu $lumen); v1=$(cpu $vm)
awk -v l="$(echo "$l1 - $l0" | bc)" -v v="$(echo "$v1 - $v0" | bc)" -v n="$TOTAL" -v d="$(echo "$t2 - $t1" | bc)" -v s="$(echo "$t2 - $t0" | bc)" 'BEGIN {
  printf "queue empty %.1f s after the load (%.0f samples/s end to end)\n", d, n / s
  printf "lumen CPU until sent: %.1f s, %.2f CPU-seconds per million samples\n", l, l / n * 1e6
  printf "victoria-metrics CPU: %.1f s, %.2f CPU-seconds per million samples\n", v, v / n * 1e6 }'
curl -fs http://127.0.0.1:18428/internal/force_flush > /dev/null
sleep 2
stored=$(curl -fs 'http://127.0.0.1:18428/api/v1/query' --data-urlencode 'query=sum(count_over_time({__name__!=""}[10y]))' | sed -E 's/.*"value":\[[^,]*,"([0-9.e+]*)".*/\1/')
echo "samples in the backend: $stored of $TOTAL sent"
curl -fs http://127.0.0.1:14320/metrics | grep -E '^otelcol_exporter_(sent|send_failed)_metric_points_total' || true
