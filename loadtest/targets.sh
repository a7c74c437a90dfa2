#!/usr/bin/env bash
# The performance targets of BENCHMARKS.md, measured in one go: fan-out to
# 1,000 subscribers (raw and JSON) beside the floor server and the Node `ws`
# peer, the same four to 10,000 subscribers, idle connections (10,000 and
# 19,000), slow consumers, and metrics and history on against off.
# ROUNDS rounds (default 3), each server fresh per run; every report is kept
# as JSON in OUT, and targets_summary.py prints the medians.
#
#   cargo build --release --workspace --bins
#   bash loadtest/targets.sh            # about 9 minutes a round
#   ROUNDS=1 ONLY=fanout bash loadtest/targets.sh
#   ROUNDS=1 ONLY=wide WIDE_RATES=20,100 bash loadtest/targets.sh
#
# ONLY: a comma-separated subset of fanout,floor,node,wide,connect,slow,costs.
# RATES: the 1,000-subscriber ladder (published messages/s); WIDE_RATES and
# WIDE_NODE_RATES the 10,000-subscriber ones for fanout and the floor, and for
# Node (x10,000 deliveries/s). PORT: where the servers listen.
# Everything runs on loopback, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-./target/release}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-fanout,floor,node,wide,connect,slow,costs}
OUT=${OUT:-$(mktemp -d /tmp/fanout-targets.XXXXXX)}
PORT=${PORT:-18450}
RATES=${RATES:-200,500,1k,1.5k,2k,3k}
# 10,000 subscribers: 200k..3M deliveries/s for fanout and the floor, 20k..200k for Node.
WIDE_RATES=${WIDE_RATES:-20,50,100,150,200,300}
WIDE_NODE_RATES=${WIDE_NODE_RATES:-2,5,10,20}
mkdir -p "$OUT"
LT=$B/fanout-loadtest
want() { [[ ",$ONLY," == *",$1,"* ]]; }

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

# broker ENV... : starts a fresh broker with the given settings; sets SERVER.
broker() {
  env FANOUT__SERVER__DRAIN_DELAY=0s "$@" "$B/fanout" --listen "127.0.0.1:$PORT" >"$OUT/broker.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

SERVER=
stop() {
  [ -n "$SERVER" ] || return 0
  kill -INT "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}
trap stop EXIT

floor_server() {
  "$LT" floor-server --listen "127.0.0.1:$PORT" >"$OUT/floor.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

node_peer() {
  node loadtest/peers/node-ws/server.js "$PORT" >"$OUT/node.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

fanout() { # name protocol rates [extra flags...]
  local name=$1 protocol=$2 rates=$3
  shift 3
  "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol "$protocol" --subscribers 1000 \
    --rates "$rates" --step-duration 5s --keep-going --duration 120s --broker-pid "$SERVER" \
    --json "$OUT/$name-$round.json" "$@" >"$OUT/$name-$round.txt" 2>&1
  grep -E "^step [0-9]+ " "$OUT/$name-$round.txt" | sed "s/^/  $name: /"
}

# wide name protocol rates [extra flags...]: 1 publisher -> 10,000 subscribers.
# A detached connection holds two descriptors in the tester (the socket and its
# write-only duplicate), so 10,001 of them need two workers under the 20,000
# limit; four local addresses give each its own ephemeral port range, as in the
# connect part. Handshakes get 30 s (a server's accept backlog overflows in the
# connect storm and the kernel retries the SYN after a second) and the servers
# 2 s to settle before the first step. A failed run is reported and the round
# goes on.
wide() {
  local name=$1 protocol=$2 rates=$3 rc=0
  shift 3
  "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol "$protocol" --subscribers 10000 \
    --workers 2 --local-addrs 4 --connect-timeout 30s --settle 2s \
    --rates "$rates" --step-duration 5s --keep-going --duration 150s --broker-pid "$SERVER" \
    --json "$OUT/$name-$round.json" "$@" >"$OUT/$name-$round.txt" 2>&1 || rc=$?
  { grep -E "^connections:" "$OUT/$name-$round.txt"; grep -E "^step [0-9]+ " "$OUT/$name-$round.txt"; } |
    sed "s/^/  $name: /" || true
  if [ "$rc" != 0 ]; then
    echo "  $name: the load tester failed (exit $rc): $(grep -m1 '^Error' "$OUT/$name-$round.txt" || tail -1 "$OUT/$name-$round.txt")"
  fi
}

# idle name connections: idle connections, one subscription each.
idle() {
  local name=$1 connections=$2
  "$LT" connect --url "ws://127.0.0.1:$PORT" --protocol json --connections "$connections" \
    --subscribe lt.idle --workers 2 --local-addrs 4 --hold 5s --broker-pid "$SERVER" \
    --json "$OUT/$name-$round.json" >"$OUT/$name-$round.txt" 2>&1
  grep -E "^connections:|^broker RSS:" "$OUT/$name-$round.txt" | sed "s/^/  $name: /"
}

if { want node || want wide; } && [ ! -d loadtest/peers/node-ws/node_modules ]; then
  npm ci --prefix loadtest/peers/node-ws >/dev/null
fi

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (reports in $OUT)"
  if want fanout; then
    for protocol in raw json; do
      broker
      fanout "fanout-$protocol" "$protocol" "$RATES"
      stop
    done
  fi
  if want floor; then
    floor_server
    fanout floor raw "$RATES" --raw-path-template /
    stop
  fi
  if want node && command -v node >/dev/null; then
    node_peer
    fanout node raw 20,50,100,200 --raw-path-template /
    stop
  fi
  if want wide; then
    for protocol in raw json; do
      broker
      wide "wide-$protocol" "$protocol" "$WIDE_RATES"
      stop
    done
    floor_server
    wide wide-floor raw "$WIDE_RATES" --raw-path-template /
    stop
    if command -v node >/dev/null; then
      node_peer
      wide wide-node raw "$WIDE_NODE_RATES" --raw-path-template /
      stop
    fi
  fi
  if want connect; then
    for n in 10k:10000 19k:19000; do
      broker
      idle "connect${n%%:*}" "${n#*:}"
      stop
    done
  fi
  if want slow; then
    broker
    "$LT" slow --url "ws://127.0.0.1:$PORT" --protocol json --subscribers 1000 --slow-fraction 0.1 \
      --rates 200 --step-duration 10s --broker-pid "$SERVER" --json "$OUT/slow-$round.json" \
      >"$OUT/slow-$round.txt" 2>&1
    grep -E "^step [0-9]+ " "$OUT/slow-$round.txt" | sed 's/^/  slow 10%: /'
    stop
    broker
    "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol json --subscribers 900 --rates 200 \
      --step-duration 10s --broker-pid "$SERVER" --json "$OUT/readers-$round.json" \
      >"$OUT/readers-$round.txt" 2>&1
    grep -E "^step [0-9]+ " "$OUT/readers-$round.txt" | sed 's/^/  900 readers alone: /'
    stop
  fi
  if want costs; then
    for setting in default metrics_off history_off; do
      case $setting in
        default) envs=() ;;
        metrics_off) envs=(FANOUT__METRICS__ENABLED=false) ;;
        history_off) envs=(FANOUT__HISTORY__SIZE=0) ;;
      esac
      broker "${envs[@]}"
      "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol json --subscribers 1000 --rates 1k \
        --step-duration 10s --broker-pid "$SERVER" --json "$OUT/cost-$setting-$round.json" \
        >"$OUT/cost-$setting-$round.txt" 2>&1
      grep -E "^step [0-9]+ " "$OUT/cost-$setting-$round.txt" | sed "s/^/  $setting: /"
      stop
    done
  fi
done
python3 loadtest/targets_summary.py "$OUT"
