#!/usr/bin/env bash
# Socket.IO fan-out, three targets in one run: 1 publisher -> 1,000 subscribers
# on fanout's own /ws JSON protocol, on fanout's Socket.IO endpoint
# (/socket.io/, WebSocket transport, a topic per namespace) and on the
# official Node socket.io 4.x server (loadtest/peers/node-socketio, the same
# broadcast with socket.broadcast.emit). The same rate ladder for all three,
# ROUNDS rounds (default 3) with the targets interleaved in each, every server
# fresh per run; every report is kept as JSON in OUT and socketio_summary.py
# prints the highest passing step per target and round, the medians, p50/p99
# and server CPU at that step, and the ratio against Node.
#
#   cargo build --release -p fanout -p fanout-loadtest
#   bash loadtest/socketio_targets.sh          # about 4 minutes a round
#   ROUNDS=1 ONLY=node-socketio RATES=10,20,50 bash loadtest/socketio_targets.sh
#
# ONLY: a comma-separated subset of fanout-json,fanout-socketio,node-socketio.
# RATES: the ladder (published messages/s; x1,000 deliveries/s). Stepping stops
# after two failing steps in a row (MAX_FAILED, default 2: one noisy step on
# this shared machine does not end a ladder, and Node is not flooded with
# rates far past its limit); KEEP_GOING=1 goes on through the ladder.
# BROKER_ENV: extra VAR=value settings for the broker (space-separated); FANOUT:
# another broker binary (default $B/fanout).
# Everything runs on loopback, every run bounded in time (--duration).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-./target/release}
LT=$B/fanout-loadtest
FANOUT=${FANOUT:-$B/fanout}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-fanout-json,fanout-socketio,node-socketio}
OUT=${OUT:-$(mktemp -d /tmp/fanout-socketio.XXXXXX)}
PORT=${PORT:-18460}
RATES=${RATES:-10,20,50,100,200,500,1k,1.5k,2k,3k}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
STEP=${STEP:-5s}
read -r -a BROKER_ENV <<<"${BROKER_ENV:-}"
mkdir -p "$OUT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

broker() {
  env FANOUT__SERVER__DRAIN_DELAY=0s "${BROKER_ENV[@]}" "$FANOUT" --listen "127.0.0.1:$PORT" \
    >"$OUT/broker-$name-$round.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

node_peer() {
  node loadtest/peers/node-socketio/server.js "$PORT" >"$OUT/node-$round.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

fanout() { # protocol
  local flags=(--max-failed-steps "${MAX_FAILED:-2}")
  [ -n "${KEEP_GOING:-}" ] && flags+=(--keep-going)
  "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol "$1" --subscribers "$SUBSCRIBERS" \
    --rates "$RATES" --step-duration "$STEP" --duration 150s --broker-pid "$SERVER" "${flags[@]}" \
    --json "$OUT/$name-$round.json" >"$OUT/$name-$round.txt" 2>&1
  local rc=$?
  grep -E "^step [0-9]+ " "$OUT/$name-$round.txt" | sed "s/^/  $name: /"
  if [ "$rc" != 0 ]; then
    echo "  $name: the load tester failed (exit $rc): $(grep -m1 '^Error' "$OUT/$name-$round.txt" || tail -1 "$OUT/$name-$round.txt")"
  fi
}

for f in "$LT" "$FANOUT"; do
  [ -x "$f" ] || { echo "$f is missing: cargo build --release -p fanout -p fanout-loadtest" >&2; exit 1; }
done
if want node-socketio; then
  command -v node >/dev/null || { echo "node is not installed (ONLY= without node-socketio to skip it)" >&2; exit 1; }
  [ -d loadtest/peers/node-socketio/node_modules ] || npm ci --prefix loadtest/peers/node-socketio >/dev/null || exit 1
fi

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (reports in $OUT)"
  for name in fanout-json fanout-socketio node-socketio; do
    want "$name" || continue
    case $name in
      fanout-json) broker && fanout json ;;
      fanout-socketio) broker && fanout socketio ;;
      node-socketio) node_peer && fanout socketio ;;
    esac
    stop
  done
done
python3 loadtest/socketio_summary.py "$OUT"
