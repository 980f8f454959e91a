#!/usr/bin/env bash
# What SLI counters cost the health ingest: steerd with 1,000 PoPs and 50
# services (an SLO on each), agents reporting every service of their PoP,
# with and without request counters, at the same offered rates, in the same
# run. One stream per PoP; steerd pinned to one CPU, the generator
# (benches/src/bin/health_load.rs) to the other. Prints each case's
# acknowledged reports/s and steerd CPU per report, then the ratios.
#
# Usage: benches/sli-load.sh
# Environment (defaults in brackets):
#   RATES ["1 5 20"]   reports per second per PoP
#   POPS [1000]  SERVICES [50]  DURATION [10]
#   SERVER_CPU [0]  CLIENT_CPU [1]
#   STEERD, LOADGEN   prebuilt binaries; unset: cargo build --release
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"1 5 20"}
POPS=${POPS:-1000}
SERVICES=${SERVICES:-50}
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

# The world: 10 regions of POPS/10 PoPs, SERVICES services on every PoP,
# one SLO per service.
python3 - "$POPS" "$SERVICES" >"$work/steerd.toml" <<'PY'
import sys
pops, services = int(sys.argv[1]), int(sys.argv[2])
regions = 10
out = ['[auth]\nmode = "none"\n', '[health]\nunknown_health = "assume-up"\n']
out.append('[[zones]]\norigin = "example.test."\nns = ["ns1.example.test."]\n'
           'soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", serial = 1, minimum = 60 }\n'
           'records = [{ name = "ns1", type = "A", value = "127.0.0.1" }]\n')
for r in range(regions):
    fb = [f'"r{(r + 1) % regions}"', f'"r{(r + 2) % regions}"']
    out.append(f'[[regions]]\nid = "r{r}"\nnetworks = ["10.{r}.0.0/16"]\nfallback = [{", ".join(fb)}]\n')
ids = []
for p in range(pops):
    pid = f"p{p:04d}"
    ids.append(pid)
    a, b = divmod(p + 1, 250)
    out.append(f'[[pops]]\nid = "{pid}"\nregion = "r{p % regions}"\nipv4 = "198.18.{a}.{b}"\ncapacity_rps = 10000\n')
pop_list = ", ".join(f'"{i}"' for i in ids)
for s in range(services):
    out.append(f'[[services]]\nid = "svc{s}"\nname = "svc{s}.example.test."\nttl = 30\nmax_records = 2\npops = [{pop_list}]\n')
    out.append(f'[[slos]]\nname = "svc{s}-availability"\nservice = "svc{s}"\nobjective = 0.999\n')
print("\n".join(out))
PY
pop_ids=$(python3 -c "print(','.join(f'p{p:04d}' for p in range($POPS)))")

run_case() {
  local rate=$1 sli=$2
  local dns grpc http extra=()
  [ "$sli" = off ] && extra=(--no-sli)
  dns=$(free_port); grpc=$(free_port); http=$(free_port)
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$STEERD" --config "$work/steerd.toml" \
    --state-dir "$work/state-$rate-$sli" --dns-listen "127.0.0.1:$dns" \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >"$work/steerd.log" 2>&1 &
  steerd_pid=$!
  for _ in $(seq 300); do
    curl -sf "127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $POPS PoPs x $SERVICES services, $rate reports/s per PoP, SLI counters $sli"
  taskset -c "$CLIENT_CPU" "$LOADGEN" --endpoint "http://127.0.0.1:$grpc" --dns "" \
    --streams "$POPS" --rate "$rate" --duration "$DURATION" --steerd-pid "$steerd_pid" \
    --pops "$pop_ids" --services "$SERVICES" "${extra[@]}" | tee "$work/out-$rate-$sli"
  kill "$steerd_pid"; wait "$steerd_pid" 2>/dev/null || true
  steerd_pid=
}

for rate in $RATES; do
  run_case "$rate" off
  run_case "$rate" on
done
echo "== with SLI counters / without (same offered rate)"
for rate in $RATES; do
  python3 - "$work/out-$rate-off" "$work/out-$rate-on" "$rate" <<'PY'
import re, sys
def figures(path):
    text = open(path).read()
    acc = re.search(r"accepted_rps=([0-9.]+)", text)
    cpu = re.search(r"steerd_us_per_report=([0-9.]+)", text)
    return (float(acc.group(1)) if acc else float("nan"), float(cpu.group(1)) if cpu else float("nan"))
(a0, c0), (a1, c1) = figures(sys.argv[1]), figures(sys.argv[2])
print(f"  {sys.argv[3]}/s per PoP: reports/s {a1:.0f} vs {a0:.0f} ({a1 / a0:.2f}x), "
      f"CPU per report {c1:.1f} vs {c0:.1f} us ({c1 / c0:.2f}x)")
PY
done
