#!/usr/bin/env bash
# Flood vs latency (recorded in BENCHMARKS.md): a measured fan-out (1 publisher
# -> 100 subscribers, 1,000 msg/s, 10 s) alone, next to one client flooding
# publishes at 300k/s with no limit, and with limits.publish_rate_per_connection
# = 5000; three rounds. Needs `cargo build --release --workspace --bins`.
set -u
cd "$(dirname "$0")/.."
B=./target/release
PORT=18411
for rep in 1 2 3; do
for mode in alone flood-nolimit flood-limit; do
  limit=0; [ $mode = flood-limit ] && limit=5000
  FANOUT__LIMITS__PUBLISH_RATE_PER_CONNECTION=$limit $B/fanout --listen 127.0.0.1:$PORT >/tmp/flood-broker.log 2>&1 &
  BP=$!
  for _ in $(seq 100); do curl -fsS http://127.0.0.1:$PORT/readyz >/dev/null 2>&1 && break; sleep 0.05; done
  FP=
  if [ $mode != alone ]; then
    $B/fanout-loadtest fanin --url ws://127.0.0.1:$PORT --publishers 1 --subscribers 1 --rates 300k \
      --step-duration 25s --duration 40s --json /tmp/flood-flooder-$mode-$rep.json >/tmp/flood-flooder.log 2>&1 &
    FP=$!
    sleep 3
  fi
  $B/fanout-loadtest fanout --url ws://127.0.0.1:$PORT --publishers 1 --subscribers 100 --rates 1k \
    --step-duration 10s --broker-pid $BP --json /tmp/flood-$mode-$rep.json >/dev/null 2>&1
  python3 - /tmp/flood-$mode-$rep.json $mode $rep <<'PY'
import json,sys
s=json.load(open(sys.argv[1]))["steps"][0]; l=s["latency_ms"]
print(f"{sys.argv[2]:14} rep {sys.argv[3]}: received {s['received']}/{s['expected']} p50 {l['p50']:.2f} p99 {l['p99']:.2f} max {l['max']:.2f} broker cpu {s.get('broker_cpu_percent', s.get('broker',{}))}")
PY
  [ -n "$FP" ] && kill $FP 2>/dev/null
  kill $BP; wait $BP 2>/dev/null
  [ -n "$FP" ] && wait $FP 2>/dev/null
done
done
