# Sourced by the benchmark scripts (after $work/lumen is built):
# ready URL waits up to a minute for URL to answer 200; serve DIR ARGS…
# starts lumen serve on DIR with the benchmarks' loopback ports
# (127.0.0.1:14320, :14317, :14318) and ARGS, sets $lumen to its pid and
# waits until it is ready; serve_on PREFIX DIR ARGS… does the same on the
# ports PREFIX20, PREFIX17 and PREFIX18 (serve is serve_on 143).
ready() { for _ in $(seq 600); do curl -fs "$1" > /dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1"; exit 1; }
serve_on() { # port-prefix data-dir extra-args...
  local p=$1 dir=$2; shift 2
  "$work/lumen" serve --data-dir "$dir" --http-addr "127.0.0.1:${p}20" --otlp-grpc-addr "127.0.0.1:${p}17" \
    --otlp-http-addr "127.0.0.1:${p}18" --log-level warn --retention 0 --disk-reserve-bytes 0 "$@" &
  lumen=$!
  ready "http://127.0.0.1:${p}20/-/ready"
}
serve() { serve_on 143 "$@"; }
