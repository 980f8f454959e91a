#!/usr/bin/env bash
# Instructions per query of steerd on the resolver mix (benches/dns/mix.py),
# counted by valgrind's callgrind: the same config as benches/dns/mix.sh's
# Steer, 2,000 qps for 10 s after a warm-up, counters zeroed in between.
# Unlike CPU time on a shared VM (which moves by a fifth between rounds),
# the count repeats to about 1%, so it tells whether a change to the
# query path made it cheaper. It counts no cache misses and every thread
# (the control loop's second-by-second work is a few percent of it at
# this rate, far less at benchmark rates).
#
#   benches/dns/instructions.sh                      # builds steerd (release)
#   STEERD=/tmp/steerd-old benches/dns/instructions.sh
#
# Needs: apt-get (installs valgrind, dnsperf, dig if missing), cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=benches/dns/need.sh
source benches/dns/need.sh
need_packages valgrind=valgrind dnsperf=dnsperf dig=bind9-dnsutils

STEERD=${STEERD:-}
if [ -z "$STEERD" ]; then
  cargo build --release -q -p steer --bin steerd
  STEERD=$PWD/target/release/steerd
fi
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
BASE_PORT=${BASE_PORT:-25400}
MIX_STEER_PORT=$((BASE_PORT + 3))

WORK=$(mktemp -d /tmp/steer-dnsinstr.XXXXXX)
VG=
cleanup() {
  if [ -n "$VG" ]; then kill "$VG" 2>/dev/null || true; wait "$VG" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 benches/dns/mix.py "$WORK/mix.bin"
# Steer's zone and config exactly as mix.sh writes them.
mkdir -p "$WORK/mix"
sed -n '/^cat > "\$WORK\/mix\/base.zone"/,/^ZONE$/p' benches/dns/mix.sh > "$WORK/gen.sh"
sed -n '/^mkdir -p "\$WORK\/mix\/steer"/,/^TOML$/p' benches/dns/mix.sh >> "$WORK/gen.sh"
# shellcheck disable=SC1091
source "$WORK/gen.sh"

valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p.out" \
  "$STEERD" --config "$WORK/mix/steer/steerd.toml" > "$WORK/steerd.log" 2>&1 &
VG=$!
for _ in $(seq 1 300); do
  if dig @127.0.0.1 -p "$MIX_STEER_PORT" app.bench.test A +short +time=1 +tries=1 2>/dev/null | grep -q 192.0.2; then break; fi
  sleep 0.2
done
dnsperf -s 127.0.0.1 -p "$MIX_STEER_PORT" -d "$WORK/mix.bin" -B -Q "$RATE" -l 3 -c 4 -q 200 >/dev/null 2>&1 || true
callgrind_control -z "$VG" >/dev/null 2>&1
out=$(dnsperf -s 127.0.0.1 -p "$MIX_STEER_PORT" -d "$WORK/mix.bin" -B -Q "$RATE" -l "$DURATION" -c 4 -q 200 2>&1)
callgrind_control -d "$VG" >/dev/null 2>&1
queries=$(echo "$out" | awk '/Queries completed/ {print $3}')
# The dump requested above is part 1 of the profile.
for _ in $(seq 1 50); do
  ls "$WORK"/cg.*.out.1 >/dev/null 2>&1 && break
  sleep 0.2
done
instructions=$(grep -h '^summary' "$WORK"/cg.*.out.1 | awk '{s += $2} END {print s}')
echo "steerd on the resolver mix: $queries queries at $RATE qps, $(python3 -c "print(round($instructions / $queries))") instructions per query"
