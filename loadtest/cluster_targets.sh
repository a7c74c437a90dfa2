#!/usr/bin/env bash
# The cluster figures of BENCHMARKS.md ("Cluster publishing"), one node beside
# cluster mode in the same run: fan-in (10 publishers -> 1 subscriber, one topic),
# fan-out (1 publisher -> 1,000 subscribers, json) through 3 nodes, and the
# 1,000-item HTTP batch. Every server starts fresh per run (NATS on a new store).
#
#   cargo build --release --workspace --bins
#   bash loadtest/cluster_targets.sh              # ROUNDS=3 by default; about 4 minutes a round
#   ONLY=batch ROUNDS=1 bash loadtest/cluster_targets.sh
#
# ONLY: a comma-separated subset of fanin,fanout,batch. NATS: the nats-server binary.
# TESTER_NICE: the load tester's nice level for fan-out (default -10, see BENCHMARKS.md;
# "" runs it at default priority). Everything runs on loopback, bounded in time.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-./target/release}
LT=$B/fanout-loadtest
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-fanin,fanout,batch}
NATS=${NATS:-$(command -v nats-server || echo /usr/sbin/nats-server)}
OUT=${OUT:-$(mktemp -d /tmp/fanout-cluster.XXXXXX)}
TESTER_NICE=${TESTER_NICE--10}
FANIN_RATES=${FANIN_RATES:-80k,100k,120k,140k,160k,200k,240k}
FANOUT_RATES=${FANOUT_RATES:-500,1k,1.5k,2k,3k}
PORTS=(18383 18384 18385)
want() { [[ ",$ONLY," == *",$1,"* ]]; }
nice_tester() { if [ -n "$TESTER_NICE" ]; then nice -n "$TESTER_NICE" "$@"; else "$@"; fi; }

open_port() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 400); do open_port "$1" && return 0; sleep 0.05; done; echo "nothing on $1" >&2; return 1; }
wait_free() { for _ in $(seq 400); do open_port "$1" || return 0; sleep 0.05; done; return 1; }

PIDS=()
up() { # nodes cluster|single
  local nodes=$1 mode=$2 env=(FANOUT__SERVER__DRAIN_DELAY=0s FANOUT__LIMITS__MAX_MESSAGE_BYTES=1048576)
  if [ "$mode" = cluster ]; then
    rm -rf "$OUT/nats-store"
    "$NATS" -js -a 127.0.0.1 -p 14222 -sd "$OUT/nats-store" >"$OUT/nats.log" 2>&1 &
    PIDS+=($!)
    wait_port 14222
    env+=(FANOUT__CLUSTER__NATS_URL=nats://127.0.0.1:14222)
  fi
  for port in "${PORTS[@]:0:$nodes}"; do
    env "${env[@]}" "$B/fanout" --listen "127.0.0.1:$port" >"$OUT/node-$port.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
    for _ in $(seq 400); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
  done
  BROKER=${PIDS[-$nodes]}
}
down() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  wait "${PIDS[@]}" 2>/dev/null
  PIDS=()
  for port in 14222 "${PORTS[@]}"; do wait_free "$port"; done
}
urls() { local u=(); for port in "${PORTS[@]:0:$1}"; do u+=("ws://127.0.0.1:$port"); done; (IFS=,; echo "${u[*]}"); }
show() { grep -E "^step [0-9]+ " "$OUT/$1.txt" | sed "s/^/  $1: /"; }

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (reports in $OUT)"
  if want fanin; then
    for mode in single cluster; do
      up 1 "$mode"
      "$LT" fanin --protocol json --publishers 10 --subscribers 1 --rates "$FANIN_RATES" \
        --step-duration 4s --keep-going --url "$(urls 1)" --broker-pid "$BROKER" \
        --json "$OUT/fanin-$mode-$round.json" >"$OUT/fanin-$mode-$round.txt" 2>&1
      show "fanin-$mode-$round"
      down
    done
  fi
  if want fanout; then
    for setup in "1 single" "3 cluster"; do
      read -r nodes mode <<<"$setup"
      up "$nodes" "$mode"
      nice_tester "$LT" fanout --protocol json --subscribers 1000 --rates "$FANOUT_RATES" \
        --step-duration 5s --keep-going --url "$(urls "$nodes")" --broker-pid "$BROKER" \
        --json "$OUT/fanout-$nodes-$round.json" >"$OUT/fanout-$nodes-$round.txt" 2>&1
      show "fanout-$nodes-$round"
      down
    done
  fi
  if want batch; then
    for mode in single cluster; do
      up 1 "$mode"
      python3 loadtest/batch_publish.py 127.0.0.1 "${PORTS[0]}" 15 | sed "s/^/  batch $mode: /"
      down
    done
  fi
done
