#!/usr/bin/env bash
# Logs ingest beside Loki, in one run: Lumen and Loki (single binary,
# filesystem chunks, TSDB index, its WAL on, defaults otherwise), each alone
# on a fresh data dir, take the same Loki push load from lumen-load (TOTAL
# lines at most, for at most DURATION: snappy protobuf, 1,000 lines per push
# over 10 of 100 streams, 4 senders, MIX lines: JSON, logfmt, access lines
# and stacks, a trace id in about one line in six), alternated ROUNDS times.
# Each prints lines/s, the server's CPU-seconds per million lines, its peak
# RSS (VmHWM: everything the process maps), its bytes on disk per line
# (Lumen after a clean stop, without its disk reserve, a 96-MiB file of
# free space kept for a full disk; Loki after /flush, its chunks and index
# apart from its WAL), then a trace's lines found by LogQL
# ({namespace="shop"} |= "<id>") and a rare string over everything, and for
# Lumen its trace-id index (/api/v1/traces/{id}?include=logs). Lumen runs
# once per log compression in COMPRESSIONS (fast, the default, and better).
# Peer: `make loki-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
LOKI=${LOKI:-$PEERS/loki-v3.7.8}
TOTAL=${TOTAL:-6000000}
DURATION=${DURATION:-70s}
MIX=${MIX:-realistic}
ROUNDS=${ROUNDS:-1}
LOOKUPS=${LOOKUPS:-200}
COMPRESSIONS=${COMPRESSIONS:-fast better}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
echo "machine: $(nproc) cores; load: at most $TOTAL lines or $DURATION, $MIX mix, 1000 per push over 10 of 100 streams, 4 senders"

load() { # name addr pid dir ready-url correlated
  echo "== $1"
  "$work/lumen-load" -signal logs -mix "$MIX" -http "$2" -streams 100 -batch 1000 -concurrency 4 -total "$TOTAL" \
    -duration "$DURATION" -pid "$3" -disk "$4" -ready-url "$5" -correlated="$6" -lookups "$LOOKUPS" -logql-lookups 5 | grep -v '^$'
}

per_line() { # bytes what
  echo "$2: $1 bytes, $(awk -v b="$1" -v n="$sent" 'BEGIN { printf "%.1f", b / n }') bytes per line"
}

# loki_config DIR: a single-binary Loki on 127.0.0.1:13100.
. cmd/lumen-load/loki-config.sh

for r in $(seq "$ROUNDS"); do
  for c in $COMPRESSIONS; do
    rm -rf "$work/d" && mkdir -p "$work/d"
    "$work/lumen" serve --data-dir "$work/d" --http-addr 127.0.0.1:14320 --otlp-grpc-addr 127.0.0.1:14317 \
      --otlp-http-addr 127.0.0.1:14318 --log-level warn --retention 0 --disk-reserve-bytes 0 --log-compression "$c" &
    pid=$!
    load "lumen (round $r, --log-compression $c)" 127.0.0.1:14320 $pid "$work/d" http://127.0.0.1:14320/-/ready true | tee "$work/out"
    sent=$(awk '/^sent /{print $2}' "$work/out")
    kill $pid; wait $pid 2>/dev/null || true
    per_line "$(du -sB1 "$work/d" | cut -f1)" "after a clean stop"
  done

  rm -rf "$work/d" && mkdir -p "$work/d"
  loki_config "$work/d" > "$work/loki.yaml"
  "$LOKI" -config.file "$work/loki.yaml" > "$work/loki.log" 2>&1 &
  pid=$!
  load "loki (round $r)" 127.0.0.1:13100 $pid "$work/d" http://127.0.0.1:13100/ready false | tee "$work/out" \
    || { tail -20 "$work/loki.log"; exit 1; }
  sent=$(awk '/^sent /{print $2}' "$work/out")
  curl -fsS -X POST http://127.0.0.1:13100/flush
  # The flush is asynchronous: wait until the chunks stop growing.
  prev=-1
  for _ in $(seq 120); do
    now=$(du -sB1 "$work/d/chunks" | cut -f1)
    [ "$now" = "$prev" ] && break
    prev=$now; sleep 2
  done
  total=$(du -sB1 "$work/d" | cut -f1)
  wal=$(du -sB1 "$work/d/wal" | cut -f1)
  per_line "$((total - wal))" "after /flush, chunks and index (WAL of $wal bytes apart)"
  kill $pid; wait $pid 2>/dev/null || true
done
