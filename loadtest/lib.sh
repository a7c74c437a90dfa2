# shellcheck shell=bash
# Shared by the *_targets.sh scripts (sourced, not run): choosing parts with
# ONLY, waiting for a port to open or free, and stopping the server in
# SERVER (also when the script exits early). Needs ONLY and PORT set.

want() { [[ ",$ONLY," == *",$1,"* ]]; }

open_port() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 400); do open_port "$1" && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; return 1; }
wait_free() { for _ in $(seq 400); do open_port "$1" || return 0; sleep 0.05; done; echo "port $1 still busy" >&2; return 1; }

SERVER=
stop() {
  [ -n "$SERVER" ] || return 0
  kill -INT "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  SERVER=
  wait_free "$PORT"
}
trap stop EXIT
