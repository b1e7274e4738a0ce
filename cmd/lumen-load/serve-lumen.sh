# Sourced by the benchmark scripts (after $work/lumen is built):
# ready URL waits up to a minute for URL to answer 200; serve DIR ARGS…
# starts lumen serve on DIR with the benchmarks' loopback ports
# (127.0.0.1:14320, :14317, :14318) and ARGS, sets $lumen to its pid and
# waits until it is ready.
ready() { for _ in $(seq 600); do curl -fs "$1" > /dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1"; exit 1; }
serve() { # data-dir extra-args...
  local dir=$1; shift
  "$work/lumen" serve --data-dir "$dir" --http-addr 127.0.0.1:14320 --otlp-grpc-addr 127.0.0.1:14317 \
    --otlp-http-addr 127.0.0.1:14318 --log-level warn --retention 0 --disk-reserve-bytes 0 "$@" &
  lumen=$!
  ready http://127.0.0.1:14320/-/ready
}
