#!/usr/bin/env bash
# Health-ingest throughput: steerd's reports/s and CPU with N concurrent agent
# streams, and DNS answer latency on the same steerd during the load.
#
# steerd (quickstart config, DNS per-query logging off) is pinned to one CPU,
# the load generator (benches/src/bin/health_load.rs) to the other. Each
# stream is its own TCP connection and gRPC bidi stream, sending realistic
# reports (two probes, load figures, two peer observations) at RATE per
# second, one per tick, encoded from a per-stream template as the tick
# fires (no batching by the generator); steerd acks each one. CPU is
# utime+stime of steerd from /proc over the measured window. All traffic
# stays on 127.0.0.1.
#
# Usage: benches/health-load.sh
# Environment (defaults in brackets):
#   CASES ["1000:1 10000:1 1000:60 10000:6"]  streams:reports-per-second pairs
#   DURATION [10]     measured seconds per case (after all streams are open)
#   SERVER_CPU [0]    CPU steerd is pinned to
#   CLIENT_CPU [1]    CPU the load generator is pinned to
#   STEERD, LOADGEN   prebuilt binaries; unset: cargo build --release
set -euo pipefail
cd "$(dirname "$0")/.."

CASES=${CASES:-"1000:1 10000:1 1000:60 10000:6"}
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "${STEERD:-}" ] || [ -z "${LOADGEN:-}" ]; then
  cargo build --release -q -p steer --bin steerd -p steer-benches --bin health-load
  STEERD=${STEERD:-$TARGET/release/steerd}
  LOADGEN=${LOADGEN:-$TARGET/release/health-load}
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
steerd_pid=
cleanup() {
  if [ -n "$steerd_pid" ]; then kill "$steerd_pid" 2>/dev/null || true; wait "$steerd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

run_case() {
  local streams=$1 rate=$2
  local dns grpc http
  dns=$(free_port); grpc=$(free_port); http=$(free_port)
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$STEERD" --config configs/quickstart.toml \
    --state-dir "$work/state-$streams-$rate" --dns-listen "127.0.0.1:$dns" \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >"$work/steerd.log" 2>&1 &
  steerd_pid=$!
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $streams streams x $rate reports/s"
  taskset -c "$CLIENT_CPU" "$LOADGEN" --endpoint "http://127.0.0.1:$grpc" --dns "127.0.0.1:$dns" \
    --streams "$streams" --rate "$rate" --duration "$DURATION" --steerd-pid "$steerd_pid" \
    --metrics "127.0.0.1:$http"
  kill "$steerd_pid"; wait "$steerd_pid" 2>/dev/null || true
  steerd_pid=
}

run_case 0 1
for c in $CASES; do
  run_case "${c%%:*}" "${c##*:}"
done
