#!/usr/bin/env bash
# TLS fan-out: 1 publisher -> 1,000 subscribers on fanout's /ws JSON protocol
# over plain ws:// and over wss:// (the broker serving a self-signed P-256
# certificate made here with openssl; the load tester trusting it with
# --ca-file), the same ladder for both with --keep-going, and broker RSS per
# idle connection: IDLE (default 10,000) connections subscribed to one topic
# and held, over ws:// and over wss://. ROUNDS rounds (default 3), the four
# runs interleaved in each, a fresh broker per run; every report is kept as
# JSON in OUT and tls_summary.py prints the medians: the highest passing step
# of TLS against plain, p50/p99 and broker CPU per step, TLS records per
# delivery, and broker RSS per idle connection.
#
#   cargo build --release -p fanout -p fanout-loadtest
#   bash loadtest/tls_targets.sh              # about 2 minutes a round
#   ROUNDS=1 ONLY=tls,idle-tls RATES=500,1k bash loadtest/tls_targets.sh
#
# ONLY: a comma-separated subset of plain,tls,idle-plain,idle-tls. RATES: the
# ladder (published messages/s; x1,000 deliveries/s). BROKER_ENV: extra
# VAR=value settings for the broker (space-separated). Needs openssl. Everything
# runs on loopback, every run bounded in time (--duration).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-./target/release}
LT=$B/fanout-loadtest
FANOUT=${FANOUT:-$B/fanout}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-plain,tls,idle-plain,idle-tls}
OUT=${OUT:-$(mktemp -d /tmp/fanout-tls.XXXXXX)}
PORT=${PORT:-18480}
RATES=${RATES:-200,500,1k,1.5k,2k,3k}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
STEP=${STEP:-5s}
IDLE=${IDLE:-10000}
read -r -a BROKER_ENV <<<"${BROKER_ENV:-}"
mkdir -p "$OUT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

# A self-signed certificate for 127.0.0.1 and localhost, not a CA (webpki
# refuses a CA certificate as a server's own), trusted as its own root.
CERT=$OUT/cert.pem KEY=$OUT/key.pem
make_cert() {
  [ -s "$CERT" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -addext basicConstraints=critical,CA:FALSE \
    -days 2 -keyout "$KEY" -out "$CERT" 2>"$OUT/openssl.log" ||
    { echo "openssl failed: $(tail -1 "$OUT/openssl.log")" >&2; exit 1; }
}

broker() { # [tls]
  local tls=()
  [ "${1:-}" = tls ] && tls=(FANOUT__TLS__CERT_FILE="$CERT" FANOUT__TLS__KEY_FILE="$KEY")
  env FANOUT__SERVER__DRAIN_DELAY=0s "${tls[@]}" "${BROKER_ENV[@]}" "$FANOUT" --listen "127.0.0.1:$PORT" \
    >"$OUT/broker-$name-$round.log" 2>&1 &
  SERVER=$!
  wait_port "$PORT"
}

report() { # rc
  grep -E "^step [0-9]+ |^tls:|^connections:|^broker RSS" "$OUT/$name-$round.txt" | sed "s/^/  $name: /"
  if [ "$1" != 0 ]; then
    echo "  $name: the load tester failed (exit $1): $(grep -m1 '^Error' "$OUT/$name-$round.txt" || tail -1 "$OUT/$name-$round.txt")"
  fi
}

fanout() { # url [flags...]
  "$LT" fanout --url "$1" "${@:2}" --protocol json --subscribers "$SUBSCRIBERS" \
    --rates "$RATES" --step-duration "$STEP" --keep-going --duration 150s --broker-pid "$SERVER" \
    --json "$OUT/$name-$round.json" >"$OUT/$name-$round.txt" 2>&1
  report $?
}

idle() { # url [flags...]
  "$LT" connect --url "$1" "${@:2}" --protocol json --connections "$IDLE" --subscribe lt.idle \
    --workers 2 --local-addrs 4 --hold 5s --connect-timeout 30s --duration 120s --broker-pid "$SERVER" \
    --json "$OUT/$name-$round.json" >"$OUT/$name-$round.txt" 2>&1
  report $?
}

for f in "$LT" "$FANOUT"; do
  [ -x "$f" ] || { echo "$f is missing: cargo build --release -p fanout -p fanout-loadtest" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "openssl is missing (it makes the test certificate)" >&2; exit 1; }
make_cert

WS=ws://127.0.0.1:$PORT
WSS=(wss://127.0.0.1:$PORT --ca-file "$CERT")
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (reports in $OUT)"
  for name in plain tls idle-plain idle-tls; do
    want "$name" || continue
    case $name in
      plain) broker && fanout "$WS" ;;
      tls) broker tls && fanout "${WSS[@]}" ;;
      idle-plain) broker && idle "$WS" ;;
      idle-tls) broker tls && idle "${WSS[@]}" ;;
    esac
    stop
  done
done
python3 loadtest/tls_summary.py "$OUT"
