# The resolver mix, sourced by benches/dns/run.sh (its helpers, $WORK,
# $RATE, CPUs and RESULTS): what resolvers send an authoritative GSLB, per
# benches/dns/mix.py: EDNS on every query, Client Subnet on most (IPv4 /24
# and IPv6 /56, mapped and unmapped regions), two records per steered
# answer, a static name with two records, an NXDOMAIN share; then the same
# mix with the DNSSEC OK bit on one query in five, served from a signed
# zone. Each server answers the steered name the best way it can: Steer
# by region and weight, gdnsd by its geoip map (the same networks) and
# weighted groups, NSD and Knot with a static pair.
# shellcheck shell=bash

MIX_STEER_PORT=$((BASE_PORT + 3))
MIX_GDNSD_PORT=$((BASE_PORT + 4))
MIX_NSD_PORT=$((BASE_PORT + 5))
MIX_KNOT_PORT=$((BASE_PORT + 6))

python3 benches/dns/mix.py "$WORK/mix.bin"
python3 benches/dns/mix.py "$WORK/mix-do.bin" --do

mkdir -p "$WORK/mix"
cat > "$WORK/mix/base.zone" <<'ZONE'
$TTL 3600
@    IN SOA ns1 hostmaster 1 3600 600 604800 60
@    IN NS  ns1
ns1  IN A   127.0.0.1
www  IN A   192.0.2.80
www  IN A   192.0.2.81
ZONE

# Steer: app steered by region over two PoPs each, two records per answer,
# the zone signed (answers carry signatures only when DO is set).
mkdir -p "$WORK/mix/steer"
cp "$WORK/mix/base.zone" "$WORK/mix/steer/bench.test.zone"
cat > "$WORK/mix/steer/steerd.toml" <<TOML
[server]
dns_listen = "127.0.0.1:$MIX_STEER_PORT"
grpc_listen = "127.0.0.1:$((BASE_PORT + 12))"
http_listen = "127.0.0.1:$((BASE_PORT + 13))"
state_dir = "$WORK/mix/steer/state"
[auth]
mode = "none"
[health]
unknown_health = "assume-up"
[dns]
udp_workers = 1
[[zones]]
origin = "bench.test."
file = "bench.test.zone"
dnssec = true
[[regions]]
id = "eu"
networks = ["10.1.0.0/16", "2001:db8:1::/48"]
[[regions]]
id = "us"
networks = ["10.2.0.0/16", "2001:db8:2::/48"]
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
max_records = 2
pops = ["fra1", "ams1", "iad1", "ord1"]
TOML

# gdnsd: the same networks in a geoip map, each region a weighted group
# returning both its addresses. gdnsd has no DNSSEC.
mkdir -p "$WORK/mix/gdnsd/zones"
{ cat "$WORK/mix/base.zone"; echo "app  30 DYNA geoip!app"; } > "$WORK/mix/gdnsd/zones/bench.test"
cat > "$WORK/mix/gdnsd/config" <<CONF
options => {
  listen => [ 127.0.0.1 ]
  dns_port => $MIX_GDNSD_PORT
  udp_threads => 1
  tcp_threads => 1
  run_dir => $WORK/mix/gdnsd/run
  state_dir => $WORK/mix/gdnsd/state
}
plugins => {
  weighted => {
    service_types => up
    multi => true
    app_eu => {
      fra1 => [ 192.0.2.11, 250 ]
      ams1 => [ 192.0.2.12, 250 ]
    }
    app_us => {
      iad1 => [ 192.0.2.21, 250 ]
      ord1 => [ 192.0.2.22, 250 ]
    }
  }
  geoip => {
    maps => {
      bench => {
        datacenters => [ eu, us ]
        nets => {
          10.1.0.0/16 => [ eu, us ]
          2001:db8:1::/48 => [ eu, us ]
          10.2.0.0/16 => [ us, eu ]
          2001:db8:2::/48 => [ us, eu ]
        }
      }
    }
    resources => {
      app => {
        map => bench
        dcmap => {
          eu => %weighted!app_eu
          us => %weighted!app_us
        }
      }
    }
  }
}
CONF

# NSD and Knot: app as a static pair. Knot signs the zone itself (its
# default policy: ECDSA P-256, NSEC); NSD serves it unsigned.
for s in nsd knot; do
  mkdir -p "$WORK/mix/$s"
  { cat "$WORK/mix/base.zone"; printf 'app  30 IN A 192.0.2.11\napp  30 IN A 192.0.2.12\n'; } > "$WORK/mix/$s/bench.test.zone"
done
sed -e "s|$WORK/nsd|$WORK/mix/nsd|g" -e "s|port: $NSD_PORT|port: $MIX_NSD_PORT|" "$WORK/nsd/nsd.conf" > "$WORK/mix/nsd/nsd.conf"
cat > "$WORK/mix/knot/knot.conf" <<CONF
server:
  rundir: "$WORK/mix/knot"
  listen: 127.0.0.1@$MIX_KNOT_PORT
  pidfile: "$WORK/mix/knot/knot.pid"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$WORK/mix/knot"
zone:
  - domain: bench.test
    file: "$WORK/mix/knot/bench.test.zone"
    storage: "$WORK/mix/knot"
    dnssec-signing: on
CONF

# All four run at once, each pinned to the server CPU (idle ones cost
# nothing), and are measured in turn for ROUNDS rounds, each round
# starting with the next server (see measure_rotated): a host whose speed
# drifts during the run then moves every server's figures alike. The
# summary takes each server's median.
echo "resolver mix (benches/dns/mix.py), ${ROUNDS:-3} rounds:"
taskset -c "$SERVER_CPU" "$STEERD" --config "$WORK/mix/steer/steerd.toml" > "$WORK/mix/steer.log" 2>&1 &
MIX_STEER_PID=$!
taskset -c "$SERVER_CPU" gdnsd -c "$WORK/mix/gdnsd" start > "$WORK/mix/gdnsd.log" 2>&1 &
MIX_GDNSD_PID=$!
taskset -c "$SERVER_CPU" nsd -d -c "$WORK/mix/nsd/nsd.conf" > "$WORK/mix/nsd.log" 2>&1 &
MIX_NSD_PID=$!
taskset -c "$SERVER_CPU" knotd -c "$WORK/mix/knot/knot.conf" > "$WORK/mix/knot.log" 2>&1 &
MIX_KNOT_PID=$!
PIDS+=("$MIX_STEER_PID" "$MIX_GDNSD_PID" "$MIX_NSD_PID" "$MIX_KNOT_PID")
wait_answer "$MIX_STEER_PORT" app.bench.test 192.0.2
wait_answer "$MIX_GDNSD_PORT" app.bench.test 192.0.2
wait_answer "$MIX_NSD_PORT" app.bench.test 192.0.2
wait_answer "$MIX_KNOT_PORT" app.bench.test 192.0.2
for round in $(seq "${ROUNDS:-3}"); do
  measure_rotated "$round" \
    "steer mix #$round|$MIX_STEER_PID|$MIX_STEER_PORT|$WORK/mix.bin|-B" \
    "gdnsd mix #$round|$MIX_GDNSD_PID|$MIX_GDNSD_PORT|$WORK/mix.bin|-B" \
    "nsd mix #$round|$MIX_NSD_PID|$MIX_NSD_PORT|$WORK/mix.bin|-B" \
    "knot mix #$round|$MIX_KNOT_PID|$MIX_KNOT_PORT|$WORK/mix.bin|-B"
  measure_rotated "$round" \
    "steer mix+do #$round|$MIX_STEER_PID|$MIX_STEER_PORT|$WORK/mix-do.bin|-B" \
    "knot mix+do #$round|$MIX_KNOT_PID|$MIX_KNOT_PORT|$WORK/mix-do.bin|-B"
done
for p in "$MIX_STEER_PID" "$MIX_GDNSD_PID" "$MIX_NSD_PID" "$MIX_KNOT_PID"; do
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
done
