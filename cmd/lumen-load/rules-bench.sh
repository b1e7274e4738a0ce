#!/usr/bin/env bash
# Rule evaluation beside Prometheus, in one run: each server alone, fresh,
# takes the same live load (every one of SERIES series once per 15 s over
# remote write) and evaluates the same RULES recording rules every 15 s.
# For each: CPU with the load alone (no rules), then with the rules, and
# the rule groups' evaluation times. Prometheus: the module proxy's
# v0.315.0 when `make prometheus-peer` built it, else the one on PATH.
# Loopback only; every phase bounded in time.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
PROM=${PROM:-$PEERS/prometheus-v0.315.0}
[ -x "$PROM" ] || PROM=$(command -v prometheus)
RULES=${RULES:-1000}
SERIES=${SERIES:-100000}
BASELINE=${BASELINE:-45}
WINDOW=${WINDOW:-180}
# CONCURRENT > 1: both evaluate that many independent rules at once
# (Lumen's rules.max_concurrent_evals, Prometheus' concurrent-rule-eval);
# 1, both servers' default: one at a time.
CONCURRENT=${CONCURRENT:-1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
load="$work/lumen-load"
"$load" -signal rulefile -rules "$RULES" -rules-file "$work/bench-rules.yml"
echo "machine: $(nproc) cores, $(uname -r); Prometheus: $PROM"
echo "load: $SERIES series once per 15 s; $RULES recording rules in groups of 100 every 15 s; rules evaluated at once: $CONCURRENT"

bench() { # name addr pid
  local name=$1 addr=$2 pid=$3
  "$load" -signal live -http "$addr" -series "$SERIES" -batch 2000 -concurrency 2 -duration $((15 + BASELINE + 30 + WINDOW + 15))s > "$work/$name-live.txt" &
  local live=$!
  sleep 15
  echo "== $name, the load alone (${BASELINE}s)"
  "$load" -signal ruleeval -http "$addr" -pid "$pid" -duration "${BASELINE}s"
  cp "$work/bench-rules.yml" "$work/$name-rules.yml"
  curl -fsS -X POST "http://$addr/-/reload" > /dev/null
  sleep 30
  echo "== $name, the load and $RULES rules (${WINDOW}s)"
  "$load" -signal ruleeval -http "$addr" -pid "$pid" -duration "${WINDOW}s"
  wait "$live" || true
  cat "$work/$name-live.txt"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

printf 'groups: []\n' > "$work/lumen-rules.yml"
printf 'rules:\n  evaluation_interval: 15s\n  max_concurrent_evals: %d\n' "$CONCURRENT" > "$work/lumen.yml"
promflags=()
[ "$CONCURRENT" -gt 1 ] && promflags=(--enable-feature=concurrent-rule-eval --rules.max-concurrent-evals="$CONCURRENT")
"$work/lumen" serve --config "$work/lumen.yml" --data-dir "$work/lumen-data" --http-addr 127.0.0.1:14320 \
  --otlp-grpc-addr 127.0.0.1:14317 --otlp-http-addr 127.0.0.1:14318 --rules "$work/lumen-rules.yml" --log-level warn &
bench lumen 127.0.0.1:14320 $!

printf 'groups: []\n' > "$work/prometheus-rules.yml"
printf 'global:\n  evaluation_interval: 15s\nrule_files: [%s]\n' "$work/prometheus-rules.yml" > "$work/prometheus.yml"
"$PROM" --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/prom-data" --web.listen-address 127.0.0.1:19090 \
  --web.enable-remote-write-receiver --web.enable-lifecycle --log.level warn "${promflags[@]}" &
bench prometheus 127.0.0.1:19090 $!
