#!/usr/bin/env bash
# CPU per query of Steer vs gdnsd (weighted GSLB answer), NSD and Knot
# (static answer, NXDOMAIN), over loopback with dnsperf at a fixed rate.
# Each server is pinned to one CPU and dnsperf to another, so the server's
# CPU time divided by the queries it answered is its cost per query. Then
# the queries resolvers send (benches/dns/mix.sh, MIX=0 skips it): EDNS
# with Client Subnet, two records per answer, static and NXDOMAIN shares,
# and a DNSSEC OK share, against gdnsd (geoip + weighted), NSD and Knot.
#
#   benches/dns/run.sh                     # 50k qps for 10 s per run
#   RATE=20000 DURATION=20 benches/dns/run.sh
#
# Needs: apt-get (installs dnsperf, nsd, knot, gdnsd if missing), cargo, taskset,
# two CPUs. Builds steerd in release mode. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-50000}
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-25300}

# shellcheck source=benches/dns/need.sh
source benches/dns/need.sh
need_packages dnsperf=dnsperf nsd=nsd gdnsd=gdnsd knotd=knot dig=bind9-dnsutils
# The Debian packages start system-wide instances; they listen on :53 and
# do not disturb the loopback ports used here.

STEERD=${STEERD:-}
if [ -z "$STEERD" ]; then
  cargo build --release -q -p steer --bin steerd
  STEERD=$PWD/target/release/steerd
fi

WORK=$(mktemp -d /tmp/steer-dnsbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

STEER_PORT=$BASE_PORT
GDNSD_PORT=$((BASE_PORT + 1))
NSD_PORT=$((BASE_PORT + 2))
KNOT_PORT=$((BASE_PORT + 7))

# ---- the same zone and an equivalent weighted name for every server ----
cat > "$WORK/bench.test.zone" <<'ZONE'
$TTL 3600
@    IN SOA ns1 hostmaster 1 3600 600 604800 60
@    IN NS  ns1
ns1  IN A   127.0.0.1
www  IN A   192.0.2.80
ZONE

# Steer: the zone file, plus app.bench.test weighted over four PoPs (one
# record per answer, sticky per client /24, TTL 30).
mkdir -p "$WORK/steer"
cp "$WORK/bench.test.zone" "$WORK/steer/"
cat > "$WORK/steer/steerd.toml" <<TOML
[server]
dns_listen = "127.0.0.1:$STEER_PORT"
grpc_listen = "127.0.0.1:$((BASE_PORT + 10))"
http_listen = "127.0.0.1:$((BASE_PORT + 11))"
state_dir = "$WORK/steer/state"
[auth]
mode = "none"
[health]
unknown_health = "assume-up"
[dns]
udp_workers = 1
[[zones]]
origin = "bench.test."
file = "bench.test.zone"
[[regions]]
id = "eu"
[[regions]]
id = "us"
[[pops]]
id = "fra1"
region = "eu"
ipv4 = "192.0.2.11"
capacity_rps = 10000
[[pops]]
id = "ams1"
region = "eu"
ipv4 = "192.0.2.12"
capacity_rps = 10000
[[pops]]
id = "iad1"
region = "us"
ipv4 = "192.0.2.21"
capacity_rps = 10000
[[pops]]
id = "ord1"
region = "us"
ipv4 = "192.0.2.22"
capacity_rps = 10000
[[services]]
id = "app"
name = "app.bench.test."
ttl = 30
max_records = 1
pops = ["fra1", "ams1", "iad1", "ord1"]
TOML

# gdnsd: the same zone with app as a DYNA weighted resource (one address
# per answer, equal weights, no health checks).
mkdir -p "$WORK/gdnsd/zones"
{ cat "$WORK/bench.test.zone"; echo "app  30 DYNA weighted!app"; } > "$WORK/gdnsd/zones/bench.test"
cat > "$WORK/gdnsd/config" <<CONF
options => {
  listen => [ 127.0.0.1 ]
  dns_port => $GDNSD_PORT
  udp_threads => 1
  tcp_threads => 1
  run_dir => $WORK/gdnsd/run
  state_dir => $WORK/gdnsd/state
}
plugins => {
  weighted => {
    service_types => up
    app => {
      fra1 => [ 192.0.2.11, 250 ]
      ams1 => [ 192.0.2.12, 250 ]
      iad1 => [ 192.0.2.21, 250 ]
      ord1 => [ 192.0.2.22, 250 ]
    }
  }
}
CONF

# NSD: static data only (it has no GSLB).
mkdir -p "$WORK/nsd"
cp "$WORK/bench.test.zone" "$WORK/nsd/"
cat > "$WORK/nsd/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$WORK/nsd"
  pidfile: "$WORK/nsd/nsd.pid"
  database: ""
  zonelistfile: "$WORK/nsd/zone.list"
  xfrdfile: "$WORK/nsd/xfrd.state"
  xfrdir: "$WORK/nsd"
  logfile: "$WORK/nsd/nsd.log"
  verbosity: 0
  # Debian builds NSD with response rate limiting on (200 qps per /24).
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: bench.test
  zonefile: bench.test.zone
CONF

# Knot: static data only, unsigned, one UDP worker.
mkdir -p "$WORK/knot"
cp "$WORK/bench.test.zone" "$WORK/knot/"
cat > "$WORK/knot/knot.conf" <<CONF
server:
  rundir: "$WORK/knot"
  listen: 127.0.0.1@$KNOT_PORT
  pidfile: "$WORK/knot/knot.pid"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$WORK/knot"
zone:
  - domain: bench.test
    file: "$WORK/knot/bench.test.zone"
    storage: "$WORK/knot"
CONF

echo "www.bench.test A" > "$WORK/static.txt"
# Names that do not exist, each asked once per pass of the file.
seq 1 20000 | awk '{ print "nx" $1 ".bench.test A" }' > "$WORK/nx.txt"
echo "app.bench.test A" > "$WORK/gslb.txt"

# ---- helpers ----
# CPU ticks (user+system) of a process and all its descendants.
tree_pids() {
  local p=$1
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do tree_pids "$c"; done
}
cpu_ticks() {
  local total=0 p
  for p in $(tree_pids "$1"); do
    if [ -r "/proc/$p/stat" ]; then
      # Fields 14 and 15 (utime, stime), counted after the ")" of comm.
      local t
      t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
      total=$((total + t))
    fi
  done
  echo "$total"
}
wait_answer() { # port name expected
  for _ in $(seq 1 100); do
    if dig @127.0.0.1 -p "$1" "$2" A +short +time=1 +tries=1 2>/dev/null | grep -q "$3"; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 did not answer $2" >&2
  return 1
}

HZ=$(getconf CLK_TCK)
RESULTS=()
measure() { # label pid port queryfile [dnsperf flags]
  local label=$1 pid=$2 port=$3 file=$4 flags=${5:-}
  # Warm up, then measure.
  # shellcheck disable=SC2086
  taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$file" $flags -Q "$RATE" -l 2 -c 4 -q 200 >/dev/null 2>&1 || true
  local before after out
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$(taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$file" $flags -Q "$RATE" -l "$DURATION" -c 4 -q 200 2>&1)
  after=$(cpu_ticks "$pid")
  local completed lost lat
  completed=$(echo "$out" | awk '/Queries completed:/ {print $3}')
  lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
  lat=$(echo "$out" | awk '/Average Latency/ {print $4 * 1e6}')
  local codes
  codes=$(echo "$out" | sed -n 's/.*Response codes: *//p' | sed 's/ ([0-9.]*%)//g')
  local us
  us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$completed" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  RESULTS+=("$label|$us|$completed|$lost|$lat")
  printf '%-22s %8s us/query  %9s answered  %6s lost  avg latency %6.1f us  %s\n' "$label" "$us" "$completed" "$lost" "$lat" "$codes"
}

# Measures a group of "label|pid|port|queryfile|dnsperf flags" runs, the
# first one taken in round R being the group's Rth (wrapping): who goes
# first changes every round, so an order effect (a warmed cache, a host
# speeding up or slowing down) favours no server in the medians.
measure_rotated() { # round spec...
  local round=$1
  shift
  local specs=("$@") n=$# i label pid port file flags
  for ((i = 0; i < n; i++)); do
    IFS='|' read -r label pid port file flags <<< "${specs[$(((i + round - 1) % n))]}"
    measure "$label" "$pid" "$port" "$file" "$flags"
  done
}

echo "rate $RATE qps for ${DURATION}s per run, ${ROUNDS:-3} rounds; servers on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU"

# The median over rounds of a label's CPU per answer.
median() {
  for r in "${RESULTS[@]}"; do
    case "${r%%|*}" in "$1 #"*) echo "$r" | cut -d'|' -f2 ;; esac
  done | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# All four servers up at once (idle ones cost nothing), measured in turn
# for ROUNDS rounds, so a host whose speed drifts moves them alike.
taskset -c "$SERVER_CPU" "$STEERD" --config "$WORK/steer/steerd.toml" > "$WORK/steer.log" 2>&1 &
STEER_PID=$!
taskset -c "$SERVER_CPU" gdnsd -c "$WORK/gdnsd" start > "$WORK/gdnsd.log" 2>&1 &
GDNSD_PID=$!
taskset -c "$SERVER_CPU" nsd -d -c "$WORK/nsd/nsd.conf" > "$WORK/nsd.log" 2>&1 &
NSD_PID=$!
taskset -c "$SERVER_CPU" knotd -c "$WORK/knot/knot.conf" > "$WORK/knot.log" 2>&1 &
KNOT_PID=$!
PIDS+=("$STEER_PID" "$GDNSD_PID" "$NSD_PID" "$KNOT_PID")
wait_answer "$STEER_PORT" www.bench.test 192.0.2.80
wait_answer "$GDNSD_PORT" app.bench.test 192.0.2
wait_answer "$NSD_PORT" www.bench.test 192.0.2.80
wait_answer "$KNOT_PORT" www.bench.test 192.0.2.80
for round in $(seq "${ROUNDS:-3}"); do
  measure_rotated "$round" \
    "steer static #$round|$STEER_PID|$STEER_PORT|$WORK/static.txt|" \
    "gdnsd static #$round|$GDNSD_PID|$GDNSD_PORT|$WORK/static.txt|" \
    "nsd static #$round|$NSD_PID|$NSD_PORT|$WORK/static.txt|" \
    "knot static #$round|$KNOT_PID|$KNOT_PORT|$WORK/static.txt|"
  measure_rotated "$round" \
    "steer gslb #$round|$STEER_PID|$STEER_PORT|$WORK/gslb.txt|" \
    "gdnsd gslb #$round|$GDNSD_PID|$GDNSD_PORT|$WORK/gslb.txt|"
  measure_rotated "$round" \
    "steer nx #$round|$STEER_PID|$STEER_PORT|$WORK/nx.txt|" \
    "gdnsd nx #$round|$GDNSD_PID|$GDNSD_PORT|$WORK/nx.txt|" \
    "nsd nx #$round|$NSD_PID|$NSD_PORT|$WORK/nx.txt|" \
    "knot nx #$round|$KNOT_PID|$KNOT_PORT|$WORK/nx.txt|"
done
for p in "$STEER_PID" "$GDNSD_PID" "$NSD_PID" "$KNOT_PID"; do
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

if [ "${MIX:-1}" = 1 ]; then
  . benches/dns/mix.sh
fi

echo
echo "Cheapest shape, median CPU per answer: Steer static $(median 'steer static') us, GSLB $(median 'steer gslb') us; gdnsd static $(median 'gdnsd static') us, GSLB $(median 'gdnsd gslb') us; NSD static $(median 'nsd static') us"
echo "Steer/gdnsd CPU per GSLB answer:  $(ratio "$(median 'steer gslb')" "$(median 'gdnsd gslb')")x  (target <= 1.0)"
echo "Steer/NSD   CPU per static answer: $(ratio "$(median 'steer static')" "$(median 'nsd static')")x  (target <= 1.0)"
echo "Steer/Knot  CPU per static answer: $(ratio "$(median 'steer static')" "$(median 'knot static')")x  (target <= 1.0; Knot static $(median 'knot static') us)"
echo "NXDOMAIN, median CPU per answer: Steer $(median 'steer nx') us, gdnsd $(median 'gdnsd nx') us, NSD $(median 'nsd nx') us, Knot $(median 'knot nx') us"
echo "  Steer/NSD  NXDOMAIN: $(ratio "$(median 'steer nx')" "$(median 'nsd nx')")x  (target <= 1.0)"
echo "  Steer/Knot NXDOMAIN: $(ratio "$(median 'steer nx')" "$(median 'knot nx')")x  (target <= 1.0)"
if [ "${MIX:-1}" = 1 ]; then
  echo "Resolver mix, median CPU per answer: Steer $(median 'steer mix') us, gdnsd $(median 'gdnsd mix') us, NSD $(median 'nsd mix') us, Knot $(median 'knot mix') us; with DO: Steer $(median 'steer mix+do') us, Knot $(median 'knot mix+do') us"
  echo "  Steer/gdnsd (unsigned mix):  $(ratio "$(median 'steer mix')" "$(median 'gdnsd mix')")x  (target <= 1.0)"
  echo "  Steer/NSD   (unsigned mix):  $(ratio "$(median 'steer mix')" "$(median 'nsd mix')")x  (NSD answers app statically)"
  echo "  Steer/Knot  (unsigned mix):  $(ratio "$(median 'steer mix')" "$(median 'knot mix')")x  (Knot answers app statically)"
  echo "  Steer/Knot  (20% DO, signed): $(ratio "$(median 'steer mix+do')" "$(median 'knot mix+do')")x  (Knot pre-signs; Steer signs online)"
fi
