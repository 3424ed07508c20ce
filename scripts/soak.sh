#!/usr/bin/env bash
# scripts/soak.sh [DURATION]: a long mixed load through tether (default
# 10m): keep-alive GETs and co-browse WebSocket sessions at once, with a
# node's health switched off or on every FLIP (default 60s, 0 = never):
# CB_Server_1 off, on, CB_Server_2 off, on, and again, so that sessions are
# evicted and fail over from each node in turn all along. Two fake
# co-browse nodes and tether run on loopback ports chosen now. Every SAMPLE
# (default 10s) it prints tether's RSS, descriptors, goroutines, client
# connections and WebSocket sessions (from /proc and tether's /metrics).
#
# It fails (exit 1) when tether exits, when the RSS of the second half of
# the run peaks more than RSS_GROWTH percent (default 25) above the first
# half's peak (a leak grows with time under a steady load), or when, SETTLE
# (default 5s) after the load stops, client connections or WebSocket
# sessions are left, goroutines are more than 10 above the count before the
# load, or descriptors more than 8 above it plus the pooled idle node
# connections. The load's own errors (the evictions make some) are
# reported, not judged. Builds nothing: run `make build` first (BIN=dir
# picks other binaries); `make soak` does both. Everything started here is
# stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN=${BIN:-bin}
DURATION=${1:-10m}
FLIP=${FLIP:-60s}
SAMPLE=${SAMPLE:-10s}
SETTLE=${SETTLE:-5s}
RSS_GROWTH=${RSS_GROWTH:-25}

for b in tether tether-bench; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 2; }
done
# seconds DURATION: a Go-style duration of s, m or h units, in seconds.
seconds() {
  local d=$1 total=0
  [[ "$d" == 0 ]] && { echo 0; return; }
  [[ "$d" =~ ^([0-9]+[hms])+$ ]] || { echo "bad duration $d (use e.g. 90s, 10m, 1h30m)" >&2; exit 2; }
  while [[ "$d" =~ ^([0-9]+)([hms])(.*)$ ]]; do
    case ${BASH_REMATCH[2]} in h) total=$((total + BASH_REMATCH[1] * 3600)) ;; m) total=$((total + BASH_REMATCH[1] * 60)) ;; s) total=$((total + BASH_REMATCH[1])) ;; esac
    d=${BASH_REMATCH[3]}
  done
  echo "$total"
}
run_s=$(seconds "$DURATION"); flip_s=$(seconds "$FLIP"); sample_s=$(seconds "$SAMPLE"); settle_s=$(seconds "$SETTLE")
((run_s >= 20)) || { echo "DURATION must be at least 20s" >&2; exit 2; }
((sample_s >= 1)) || { echo "SAMPLE must be at least 1s" >&2; exit 2; }
[[ "$RSS_GROWTH" =~ ^[0-9]+$ ]] || { echo "RSS_GROWTH must be a whole percentage" >&2; exit 2; }

ulimit -Sn "$(ulimit -Hn)"
logdir=$(mktemp -d)
start_nodes "$logdir"
# shellcheck disable=SC2086 # TETHER_FLAGS is a list of flags
start_tether "$logdir" ${TETHER_FLAGS:-}
wait_port "$tp" && wait_port "$ap" && wait_port "$n1" && wait_port "$n2" ||
  { echo "tether or a node did not start; logs in $logdir" >&2; exit 1; }

# metric NAME: the sum of NAME's samples in tether's /metrics.
metric() {
  curl -s --max-time 2 "http://127.0.0.1:$ap/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$tether_pid/status"; }
fds() { find "/proc/$tether_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
idle_pooled() {
  curl -s --max-time 2 "http://127.0.0.1:$ap/status" |
    python3 -c 'import json,sys; print(sum(n.get("idle_conns", 0) for n in json.load(sys.stdin)["nodes"]))'
}
# flip PORT 0|1: a node's health off or on.
flip() { curl -s --max-time 2 -X POST "http://127.0.0.1:$1/cobrowse/_ctl/health?up=$2" >/dev/null || true; }

base_fds=$(fds); base_gor=$(metric go_goroutines)
echo "tether (pid $tether_pid) on 127.0.0.1:$tp, admin 127.0.0.1:$ap; soak for $DURATION, node flip every $FLIP, logs in $logdir"
echo "before the load: $(rss_kib) KiB RSS, $base_fds descriptors, $base_gor goroutines"
"$BIN/tether-bench" load --target "http://127.0.0.1:$tp" --scenario mixed --duration "$DURATION" \
  --conns 16 --sessions 40 --log-level warn >"$logdir/load.out" 2>"$logdir/load.err" &
load_pid=$!; pids+=($load_pid)

printf '%8s %10s %6s %10s %8s %9s\n' elapsed rss_kib fds goroutines clients ws
status=0; start=$SECONDS; next_flip=$flip_s; step=0
first_peak=0; second_peak=0
while kill -0 "$load_pid" 2>/dev/null && ((SECONDS - start < run_s + 60)); do
  sleep "$sample_s"
  kill -0 "$tether_pid" 2>/dev/null || { echo "tether exited during the soak; its log: $logdir/tether.log" >&2; status=1; break; }
  t=$((SECONDS - start))
  if ((flip_s > 0 && t >= next_flip && t < run_s - 10)); then
    node=$((step / 2 % 2 + 1)); up=$((step % 2)); port=$([[ $node == 1 ]] && echo "$n1" || echo "$n2")
    flip "$port" "$up"; step=$((step + 1)); next_flip=$((next_flip + flip_s))
    echo "  CB_Server_$node health $([[ $up == 1 ]] && echo on || echo off)"
  fi
  r=$(rss_kib)
  if ((t <= run_s / 2)); then ((r > first_peak)) && first_peak=$r; elif ((t <= run_s)); then ((r > second_peak)) && second_peak=$r; fi
  printf '%8s %10s %6s %10s %8s %9s\n' "${t}s" "$r" "$(fds)" "$(metric go_goroutines)" \
    "$(metric tether_client_connections)" "$(metric tether_node_websocket_sessions)"
done
flip "$n1" 1; flip "$n2" 1
wait "$load_pid" || true
echo
sed -e '/^FAILED/d' "$logdir/load.out" # errors here are the evictions' (reported, not judged)
echo "(expected with FLIP: each node failure tells its sessions 1012 and ends them on the"
echo " next request; a client failed over back to a node it left counts as a sticky violation)"
sleep "$settle_s"
if ! kill -0 "$tether_pid" 2>/dev/null; then
  echo "FAIL: tether exited; its log: $logdir/tether.log"
  exit 1
fi
end_fds=$(fds); end_gor=$(metric go_goroutines); pooled=$(idle_pooled)
clients=$(metric tether_client_connections); ws=$(metric tether_node_websocket_sessions)
echo
echo "after the load (+$SETTLE): $(rss_kib) KiB RSS, $end_fds descriptors ($pooled pooled idle node connections), $end_gor goroutines, $clients client connections, $ws WebSocket sessions"
echo "RSS peak: first half $first_peak KiB, second half $second_peak KiB"
fail() { echo "FAIL: $*"; status=1; }
((clients == 0)) || fail "$clients client connections left"
((ws == 0)) || fail "$ws WebSocket sessions left"
((end_gor <= base_gor + 10)) || fail "goroutines $end_gor, $base_gor before the load"
((end_fds <= base_fds + pooled + 8)) || fail "descriptors $end_fds, $base_fds before the load and $pooled pooled"
((first_peak == 0 || second_peak * 100 <= first_peak * (100 + RSS_GROWTH))) ||
  fail "RSS grew: second-half peak $second_peak KiB against $first_peak KiB (more than $RSS_GROWTH%)"
((status == 0)) && echo "PASS"
exit $status
