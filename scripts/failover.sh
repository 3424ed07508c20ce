#!/usr/bin/env bash
# scripts/failover.sh [N]: how soon tether tells the clients of a dead node.
# Two fake co-browse nodes and tether run on loopback ports chosen now;
# tether-bench opens N echo WebSockets (default 2000) sticky to CB_Server_1
# through tether, switches that node's health off, and reports when tether
# saw it down and when each client got its Close 1012. The node is switched
# back on at the end. Builds nothing: run `make build` first (BIN=dir picks
# other binaries). Everything started here is stopped here, by PID.
#
# TETHER_FLAGS adds tether flags; with --evict-spread D among them the run
# allows D + 1s after detection (EXPECT_SPREAD=D sets that directly).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN=${BIN:-bin}
N=${1:-2000}
TETHER_FLAGS=${TETHER_FLAGS:-}
EXPECT_SPREAD=${EXPECT_SPREAD:-}

for b in tether tether-bench; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 2; }
done
[[ "$N" =~ ^[0-9]+$ ]] || { echo "N must be a number, not $N" >&2; exit 2; }
if [[ -z "$EXPECT_SPREAD" && "$TETHER_FLAGS" =~ --evict-spread[=\ ]+([^ ]+) ]]; then
  EXPECT_SPREAD=${BASH_REMATCH[1]}
fi

# Every process started below inherits the hard limit as its soft limit.
ulimit -Sn "$(ulimit -Hn)"

logdir=$(mktemp -d)
start_nodes "$logdir"
# shellcheck disable=SC2086 # TETHER_FLAGS is a list of flags
start_tether "$logdir" $TETHER_FLAGS

# Wait (bounded) until tether and its admin listener answer.
wait_port "$tp" || true
wait_port "$ap" || true

echo "tether (pid $tether_pid) on 127.0.0.1:$tp, admin :$ap, in front of CB_Server_1 (:$n1) and CB_Server_2 (:$n2)"
echo "tether flags: --health-interval 1s --health-timeout 500ms ${TETHER_FLAGS:-(no others)}; $N sessions on CB_Server_1"
spread=()
[[ -n "$EXPECT_SPREAD" ]] && spread=(--expect-spread "$EXPECT_SPREAD")
status=0
"$BIN/tether-bench" load --target "http://127.0.0.1:$tp" --scenario failover --sessions "$N" \
  --admin "http://127.0.0.1:$ap" --kill-node CB_Server_1 --node-url "http://127.0.0.1:$n1" \
  "${spread[@]}" --log-level warn || status=$?
finish_run "$status" "$logdir"
