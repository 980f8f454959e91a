#!/usr/bin/env bash
# Server CPU time per DNS answer at a fixed query rate: steerd vs gdnsd vs NSD.
#
# Each server is pinned to one CPU and dnsperf to another; dnsperf sends the
# same query mix at the same fixed rate to each in turn, and the server's CPU
# time (utime+stime from /proc, summed over the process and its children) is
# divided by the number of answers. All traffic stays on 127.0.0.1.
#
# Usage: benches/dns-cpu.sh            (run as root if packages are missing)
# Environment (defaults in brackets):
#   RATE [20000]       queries per second dnsperf sends (-Q)
#   DURATION [10]      seconds of measured load per server and round (-l)
#   WARMUP [1]         seconds of unmeasured load before each measurement
#   ROUNDS [1]         measure every server this many times, interleaved
#   ECS [1]            1: send EDNS Client Subnet 10.1.2.0/24 in every query
#   SERVERS            which to measure ["steerd steerd-quiet gdnsd nsd"]
#                      steerd: default log filter, which logs every query at INFO
#                      (hickory_server::server) to a file; steerd-quiet: the same
#                      binary with RUST_LOG=info,hickory_server=warn
#   SERVER_CPU [0]     CPU the servers are pinned to
#   CLIENT_CPU [1]     CPU dnsperf is pinned to
#   STEERD             prebuilt steerd binary; unset: cargo build --release
#   CARGO_TARGET_DIR   honoured by the build
#   KEEP [0]           1: keep the work directory (configs, logs, dnsperf output)
set -euo pipefail

RATE=${RATE:-20000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-1}
ECS=${ECS:-1}
SERVERS=${SERVERS:-steerd steerd-quiet gdnsd nsd}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP=${KEEP:-0}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1800}
START_TIMEOUT=${START_TIMEOUT:-30}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLK_TCK=$(getconf CLK_TCK)

for v in RATE DURATION WARMUP ROUNDS SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
((DURATION > 0 && RATE > 0 && ROUNDS > 0)) || { echo "error: RATE, DURATION and ROUNDS must be > 0" >&2; exit 2; }

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- packages --
declare -A SKIP=() # server -> reason it is not measured
apt_updated=0
apt_has() { # package has an install candidate
  local cand
  cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $cand && $cand != "(none)" ]]
}
ensure() { # ensure <command> <debian package> [server it is needed for]
  local cmd=$1 pkg=$2 server=${3:-}
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if ((EUID != 0)); then
    echo "error: '$cmd' is missing and installing $pkg needs root" >&2
    exit 1
  fi
  if ((apt_updated == 0)); then
    log "apt-get update"
    timeout 600 apt-get update -qq
    apt_updated=1
  fi
  if ! apt_has "$pkg"; then
    if [[ -n $server ]]; then
      SKIP[$server]="Debian package '$pkg' is not available here"
      log "not measuring $server: ${SKIP[$server]}"
      return 0
    fi
    echo "error: '$cmd' is missing and package $pkg is not available" >&2
    exit 1
  fi
  log "apt-get install $pkg"
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$pkg" >/dev/null
}

ensure taskset util-linux
ensure dnsperf dnsperf
for s in $SERVERS; do
  case $s in
    steerd | steerd-quiet) ;;
    gdnsd) ensure gdnsd gdnsd gdnsd ;;
    nsd) ensure nsd nsd nsd ;;
    *) echo "error: unknown server '$s' in SERVERS" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------------ steerd --
if [[ " $SERVERS " == *" steerd"* ]]; then
  if [[ -z ${STEERD:-} ]]; then
    log "cargo build --release -p steer --bin steerd"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release -q -p steer --bin steerd)
    target=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $target == /* ]] || target=$ROOT/$target
    STEERD=$target/release/steerd
  fi
  [[ -x $STEERD ]] || { echo "error: steerd binary $STEERD not found" >&2; exit 1; }
fi

# ------------------------------------------------------- process tracking --
WORK=$(mktemp -d /tmp/steer-dns-cpu.XXXXXX)
declare -A PID=() PORT=()
USED_PORTS=" "

descendants() { # pids of all descendants of $1
  local -A kids=()
  local f stat pid c
  local -a fields
  for f in /proc/[0-9]*/stat; do
    { read -r stat <"$f"; } 2>/dev/null || continue
    pid=${f#/proc/}
    pid=${pid%/stat}
    read -r -a fields <<<"${stat##*) }" # [0]=state [1]=ppid
    kids[${fields[1]}]+=" $pid"
  done
  local -a queue=("$1") found=()
  while ((${#queue[@]})); do
    for c in ${kids[${queue[0]}]:-}; do
      found+=("$c")
      queue+=("$c")
    done
    queue=("${queue[@]:1}")
  done
  echo "${found[@]:-}"
}

cpu_ticks() { # utime+stime (+ reaped children) of $1 and its descendants
  local total=0 p stat
  local -a f
  for p in "$1" $(descendants "$1"); do
    { read -r stat <"/proc/$p/stat"; } 2>/dev/null || continue
    read -r -a f <<<"${stat##*) }"
    # after "comm)": [0]=state ... [11]=utime [12]=stime [13]=cutime [14]=cstime
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done
  echo "$total"
}

stop_server() {
  local name=$1 pid=${PID[$1]:-} deadline
  local -a kids
  [[ -n $pid ]] || return 0
  read -r -a kids <<<"$(descendants "$pid")"
  kill -TERM "$pid" "${kids[@]}" 2>/dev/null || true
  deadline=$((SECONDS + 5))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" "${kids[@]}" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

cleanup() {
  local s
  for s in "${!PID[@]}"; do stop_server "$s"; done
  if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used_ports() { # local ports bound on any TCP/UDP socket, one per line
  local hex
  awk 'FNR > 1 { split($2, a, ":"); print a[2] }' \
    /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null | sort -u |
    while read -r hex; do echo $((16#$hex)); done
}

free_port() { # sets FREE_PORT: free for TCP and UDP on loopback, not handed out before
  local deadline=$((SECONDS + 10)) p used
  used=" $(used_ports | tr '\n' ' ') "
  while ((SECONDS < deadline)); do
    p=$((20000 + RANDOM % 40000))
    if [[ $used != *" $p "* && $USED_PORTS != *" $p "* ]]; then
      USED_PORTS+="$p "
      FREE_PORT=$p
      return 0
    fi
  done
  echo "error: no free port found" >&2
  exit 1
}

# ----------------------------------------------------------------- configs --
# The same names everywhere: app.example.test (6 PoP addresses per family,
# 2 per answer where the server can steer), www.example.test (static A),
# ns1.example.test. steerd serves configs/quickstart.toml as shipped.

write_gdnsd() { # weighted, grouped-single: one of three 2-address groups
  local dir=$WORK/gdnsd
  mkdir -p "$dir/zones"
  cat >"$dir/config" <<EOF
options => {
  listen => [ 127.0.0.1:$1 ]
  run_dir => $dir/run
  state_dir => $dir/state
  udp_threads => 1
  tcp_threads => 1
}
plugins => {
  weighted => {
    multi => false
    app => {
      addrs_v4 => {
        eu-west => { fra1 => [ 192.0.2.11, 1 ], ams1 => [ 192.0.2.12, 1 ] }
        us-east => { iad1 => [ 192.0.2.21, 1 ], ord1 => [ 192.0.2.22, 1 ] }
        ap-south => { sin1 => [ 192.0.2.31, 1 ], bom1 => [ 192.0.2.32, 1 ] }
      }
      addrs_v6 => {
        eu-west => { fra1 => [ 2001:db8::11, 1 ], ams1 => [ 2001:db8::12, 1 ] }
        us-east => { iad1 => [ 2001:db8::21, 1 ], ord1 => [ 2001:db8::22, 1 ] }
        ap-south => { sin1 => [ 2001:db8::31, 1 ], bom1 => [ 2001:db8::32, 1 ] }
      }
    }
  }
}
EOF
  cat >"$dir/zones/example.test" <<'EOF'
$TTL 3600
@     SOA ns1.example.test. hostmaster.example.test. 1 3600 600 604800 60
@     NS  ns1.example.test.
ns1   A   127.0.0.1
www   A   192.0.2.80
app   30  DYNA weighted!app
EOF
}

write_nsd() { # static: NSD cannot steer, so app carries the 2 records an answer has
  local dir=$WORK/nsd
  mkdir -p "$dir"
  cat >"$dir/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1
  port: $1
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$dir"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  xfrdir: "$dir"
  pidfile: "$dir/nsd.pid"
  logfile: "$dir/nsd.log"
  hide-version: yes
  minimal-responses: yes
  # Debian's NSD rate-limits to 200 qps per /24 by default; off for a load test.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: "example.test"
  zonefile: "example.test.zone"
EOF
  cat >"$dir/example.test.zone" <<'EOF'
$ORIGIN example.test.
$TTL 3600
@     SOA ns1.example.test. hostmaster.example.test. 1 3600 600 604800 60
@     NS  ns1.example.test.
ns1   A    127.0.0.1
www   A    192.0.2.80
app   30   A    192.0.2.11
app   30   A    192.0.2.12
app   30   AAAA 2001:db8::11
app   30   AAAA 2001:db8::12
EOF
}

# ----------------------------------------------------------------- dnsperf --
QUERIES=$WORK/queries.txt
printf '%s\n' 'app.example.test A' 'app.example.test AAAA' 'www.example.test A' >"$QUERIES"
printf '%s\n' 'www.example.test A' >"$WORK/probe.txt"
DNSPERF_OPTS=()
# ECS option 8: family 1 (IPv4), source /24, scope 0, address 10.1.2 (eu-west).
[[ $ECS == 1 ]] && DNSPERF_OPTS+=(-E 8:000118000a0102)

dnsperf_run() { # dnsperf_run <port> <seconds> <output file>
  if ! timeout $(($2 + 30)) taskset -c "$CLIENT_CPU" \
    dnsperf -s 127.0.0.1 -p "$1" -d "$QUERIES" -l "$2" -Q "$RATE" "${DNSPERF_OPTS[@]}" >"$3" 2>&1; then
    echo "error: dnsperf failed against port $1:" >&2
    tail -n 20 "$3" >&2
    exit 1
  fi
}

field() { # field <dnsperf output> <label> -> first word after the label
  awk -v l="$2" 'i = index($0, l) { split(substr($0, i + length(l)), w, " "); print w[1]; exit }' "$1"
}

# ----------------------------------------------------------------- servers --
start_server() {
  local s=$1 port http grpc logf=$WORK/$1.log
  free_port
  port=$FREE_PORT
  PORT[$s]=$port
  case $s in
    steerd | steerd-quiet)
      # An empty RUST_LOG would silence steerd, so unset it for the default.
      local -a logenv=(-u RUST_LOG)
      if [[ $s == steerd-quiet ]]; then logenv=("RUST_LOG=info,hickory_server=warn"); fi
      free_port
      grpc=$FREE_PORT
      free_port
      http=$FREE_PORT
      env "${logenv[@]}" taskset -c "$SERVER_CPU" "$STEERD" --config "$ROOT/configs/quickstart.toml" \
        --state-dir "$WORK/$s-state" --dns-listen "127.0.0.1:$port" \
        --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >"$logf" 2>&1 &
      ;;
    gdnsd)
      write_gdnsd "$port"
      taskset -c "$SERVER_CPU" gdnsd -c "$WORK/gdnsd" start >"$logf" 2>&1 &
      ;;
    nsd)
      write_nsd "$port"
      taskset -c "$SERVER_CPU" nsd -d -c "$WORK/nsd/nsd.conf" >"$logf" 2>&1 &
      ;;
  esac
  PID[$s]=$!
  local deadline=$((SECONDS + START_TIMEOUT)) out=$WORK/$s.probe
  while ((SECONDS < deadline)); do
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then
      echo "error: $s exited during startup; its log:" >&2
      tail -n 20 "$logf" >&2
      exit 1
    fi
    if timeout 5 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/probe.txt" -n 1 -t 1 >"$out" 2>&1 &&
      [[ $(field "$out" "Queries completed:") == 1 ]]; then
      log "$s ready on 127.0.0.1:$port (pid ${PID[$s]}, CPU $SERVER_CPU)"
      return 0
    fi
    sleep 0.2
  done
  echo "error: $s did not answer within ${START_TIMEOUT}s; its log:" >&2
  tail -n 20 "$logf" >&2
  exit 1
}

MEASURED=()
for s in $SERVERS; do
  [[ -n ${SKIP[$s]:-} ]] && continue
  start_server "$s"
  MEASURED+=("$s")
done

declare -A TICKS=() ANSWERS=() SECS=() LOST=() RCODES=() SIZE=()
for ((round = 1; round <= ROUNDS; round++)); do
  for s in "${MEASURED[@]}"; do
    out=$WORK/$s.round$round.txt
    log "round $round/$ROUNDS: $s, ${RATE} qps for ${DURATION}s (+${WARMUP}s warm-up)"
    if ((WARMUP > 0)); then dnsperf_run "${PORT[$s]}" "$WARMUP" "$out.warmup"; fi
    before=$(cpu_ticks "${PID[$s]}")
    dnsperf_run "${PORT[$s]}" "$DURATION" "$out"
    after=$(cpu_ticks "${PID[$s]}")
    TICKS[$s]=$((${TICKS[$s]:-0} + after - before))
    ANSWERS[$s]=$((${ANSWERS[$s]:-0} + $(field "$out" "Queries completed:")))
    LOST[$s]=$((${LOST[$s]:-0} + $(field "$out" "Queries lost:")))
    SECS[$s]=$(awk -v a="${SECS[$s]:-0}" -v b="$(field "$out" "Run time (s):")" 'BEGIN { print a + b }')
    RCODES[$s]=$(sed -n 's/^ *Response codes: *//p' "$out")
    SIZE[$s]=$(sed -n 's/^ *Average packet size: *request \([0-9]*\), response \([0-9]*\)/\2/p' "$out")
  done
done

# ----------------------------------------------------------------- results --
us_per_answer() { # CPU microseconds per answer for server $1
  awk -v t="${TICKS[$1]}" -v hz="$CLK_TCK" -v n="${ANSWERS[$1]}" \
    'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "nan" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

echo
printf 'DNS server CPU per answer: %s qps offered, %s s x %s round(s), ECS=%s, server CPU %s, dnsperf CPU %s, %s\n' \
  "$RATE" "$DURATION" "$ROUNDS" "$ECS" "$SERVER_CPU" "$CLIENT_CPU" "$(date -u +%FT%TZ)"
printf 'CPU time resolution: 1/%s s per measurement\n' "$CLK_TCK"
printf '%-12s %8s %9s %6s %8s %8s %10s  %s\n' server qps answers lost cpu_ms cpu_util us/answer "resp_bytes rcodes(last round)"
declare -A US=() QPS=()
for s in "${MEASURED[@]}"; do
  US[$s]=$(us_per_answer "$s")
  QPS[$s]=$(awk -v n="${ANSWERS[$s]}" -v t="${SECS[$s]}" 'BEGIN { printf "%.0f", n / t }')
  cpu_ms=$((TICKS[$s] * 1000 / CLK_TCK))
  util=$(awk -v ms="$cpu_ms" -v t="${SECS[$s]}" 'BEGIN { printf "%.1f%%", ms / 10 / t }')
  printf '%-12s %8s %9s %6s %8s %8s %10s  %s %s\n' "$s" "${QPS[$s]}" "${ANSWERS[$s]}" "${LOST[$s]}" \
    "$cpu_ms" "$util" "${US[$s]}" "${SIZE[$s]:-?}" "${RCODES[$s]:-?}"
done
for s in "${MEASURED[@]}"; do
  if ((QPS[$s] * 100 < RATE * 95 || LOST[$s] * 100 > ANSWERS[$s])); then
    printf 'warning: %s fell short of the offered rate or lost over 1%% of queries; its figure is not comparable\n' "$s"
  fi
done
for s in $SERVERS; do
  [[ -n ${SKIP[$s]:-} ]] && printf '%-12s not measured: %s\n' "$s" "${SKIP[$s]}"
done

summary="dns-cpu rate=$RATE duration=$DURATION rounds=$ROUNDS ecs=$ECS"
for s in "${MEASURED[@]}"; do
  k=${s//-/_}
  summary+=" ${k}_qps=${QPS[$s]} ${k}_answers=${ANSWERS[$s]} ${k}_us_per_answer=${US[$s]}"
done
for ours in steerd steerd-quiet; do
  [[ -n ${US[$ours]:-} ]] || continue
  for other in gdnsd nsd; do
    [[ -n ${US[$other]:-} ]] || continue
    r=$(ratio "${US[$ours]}" "${US[$other]}")
    printf '%s/%s CPU per answer: %s\n' "$ours" "$other" "$r"
    summary+=" ${ours//-/_}_over_$other=$r"
  done
done
echo "SUMMARY $summary"
