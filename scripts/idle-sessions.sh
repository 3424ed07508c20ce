#!/usr/bin/env bash
# scripts/idle-sessions.sh [N]: what N idle WebSocket sessions (default
# 5000) cost tether. Two fake co-browse nodes and tether run on loopback
# ports chosen now; tether-bench holds N echo sessions idle through tether
# and reads tether's RSS, descriptors and threads from /proc, before and
# while they are held. Builds nothing: run `make build` first (BIN=dir
# picks other binaries). Everything started here is stopped here, by PID.
#
# Descriptors: tether holds two per session (client and node sockets), the
# load process one, each node about N/2. Past about (hard limit - 20) / 2
# sessions tether runs out of descriptors: the run shows what it does then.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN=${BIN:-bin}
N=${1:-5000}
HOLD=${HOLD:-10s}
SETTLE=${SETTLE:-2s} # how long after the last session opened the figures are read
SOURCE_IPS=${SOURCE_IPS:-1}

for b in tether tether-bench; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 2; }
done
[[ "$N" =~ ^[0-9]+$ ]] || { echo "N must be a number, not $N" >&2; exit 2; }

# Every process started below inherits the hard limit as its soft limit.
ulimit -Sn "$(ulimit -Hn)"
if [[ "$(ulimit -Hn)" != unlimited ]] && ((2 * N + 20 > $(ulimit -Hn))); then
  echo "note: tether needs about $((2 * N + 20)) descriptors for $N sessions; the limit is $(ulimit -Hn)" >&2
fi

tp=$(free_port)
logdir=$(mktemp -d)
start_nodes "$logdir"
"$BIN/tether" --listen "127.0.0.1:$tp" \
  --node "CB_Server_1=http://127.0.0.1:$n1" \
  --node "CB_Server_2=http://127.0.0.1:$n2" \
  --admin "${ADMIN:-}" ${TETHER_FLAGS:-} --access-log=false --health-interval 2s >"$logdir/tether.out" 2>"$logdir/tether.log" & pids+=($!)
tether_pid=$!

wait_port "$tp" || true # bounded; a tether that failed shows in its log

echo "tether (pid $tether_pid) on 127.0.0.1:$tp in front of CB_Server_1 (:$n1) and CB_Server_2 (:$n2)"
echo "open-files limit: $(grep 'Max open files' "/proc/$tether_pid/limits" | awk '{print "soft " $4 ", hard " $5}'); $N idle sessions for $HOLD"
status=0
"$BIN/tether-bench" load --target "http://127.0.0.1:$tp" --scenario idle --sessions "$N" \
  --pid "$tether_pid" --hold "$HOLD" --settle "$SETTLE" --source-ips "$SOURCE_IPS" --log-level warn || status=$?
finish_run "$status" "$logdir"
