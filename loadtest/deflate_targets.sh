#!/usr/bin/env bash
# permessage-deflate fan-out (issue 18): 1 publisher -> 1,000 subscribers on
# fanout's /ws JSON protocol with a 200-byte quote and a 2 KB scoreboard
# (--payload-shape), each with the subscribers offering permessage-deflate as
# browsers do (--deflate) and without. The same ladder for the four targets,
# ROUNDS rounds (default 3) with the targets interleaved in each, a fresh
# broker per run; every report is kept as JSON in OUT and deflate_summary.py
# prints the highest passing step per target and round, the medians, p50/p99,
# broker CPU, and wire bytes per delivery, then compressed against plain.
#
#   cargo build --release -p fanout -p fanout-loadtest
#   bash loadtest/deflate_targets.sh          # about 4 minutes a round
#   ROUNDS=1 ONLY=scoreboard-deflate RATES=500,1k bash loadtest/deflate_targets.sh
#
# ONLY: a comma-separated subset of quote-plain,quote-deflate,scoreboard-plain,
# scoreboard-deflate. RATES: the ladder (published messages/s; x1,000
# deliveries/s). Stepping stops after MAX_FAILED (default 2) failing steps in a
# row. BROKER_ENV: extra VAR=value settings for the broker (space-separated).
# Everything runs on loopback, every run bounded in time (--duration).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-./target/release}
LT=$B/fanout-loadtest
FANOUT=${FANOUT:-$B/fanout}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-quote-plain,quote-deflate,scoreboard-plain,scoreboard-deflate}
OUT=${OUT:-$(mktemp -d /tmp/fanout-deflate.XXXXXX)}
PORT=${PORT:-18470}
RATES=${RATES:-200,500,1k,1.5k,2k,3k}
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

fanout() { # shape bytes [--deflate]
  local flags=(--max-failed-steps "${MAX_FAILED:-2}")
  "$LT" fanout --url "ws://127.0.0.1:$PORT" --protocol json --subscribers "$SUBSCRIBERS" \
    --payload-shape "$1" --payload-bytes "$2" "${@:3}" \
    --rates "$RATES" --step-duration "$STEP" --duration 150s --broker-pid "$SERVER" "${flags[@]}" \
    --json "$OUT/$name-$round.json" >"$OUT/$name-$round.txt" 2>&1
  local rc=$?
  grep -E "^step [0-9]+ |^deflate:" "$OUT/$name-$round.txt" | sed "s/^/  $name: /"
  if [ "$rc" != 0 ]; then
    echo "  $name: the load tester failed (exit $rc): $(grep -m1 '^Error' "$OUT/$name-$round.txt" || tail -1 "$OUT/$name-$round.txt")"
  fi
}

for f in "$LT" "$FANOUT"; do
  [ -x "$f" ] || { echo "$f is missing: cargo build --release -p fanout -p fanout-loadtest" >&2; exit 1; }
done

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (reports in $OUT)"
  for name in quote-plain quote-deflate scoreboard-plain scoreboard-deflate; do
    want "$name" || continue
    case $name in
      quote-plain) broker && fanout quote 200 ;;
      quote-deflate) broker && fanout quote 200 --deflate ;;
      scoreboard-plain) broker && fanout scoreboard 2048 ;;
      scoreboard-deflate) broker && fanout scoreboard 2048 --deflate ;;
    esac
    stop
  done
done
python3 loadtest/deflate_summary.py "$OUT"
