#!/usr/bin/env bash
# make demo: two fake co-browse nodes and tether on loopback ports chosen
# now, a short mixed load of HTTP requests and WebSocket sessions through
# tether, and the load generator's per-node report. Everything started here
# is stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN=${BIN:-bin}
DURATION=${DURATION:-5s}

tp=$(free_port); ap=$(free_port); sp=$(free_port)
logdir=$(mktemp -d)
start_nodes "$logdir"
"$BIN/tether" --listen "127.0.0.1:$tp" \
  --node "CB_Server_1=http://127.0.0.1:$n1" \
  --node "CB_Server_2=http://127.0.0.1:$n2" \
  --tls-listen "127.0.0.1:$sp" --tls-self-signed \
  --admin "127.0.0.1:$ap" --health-interval 1s >"$logdir/access.log" 2>"$logdir/tether.log" & pids+=($!)

wait_port "$tp" || true # bounded; a tether that failed shows in its log

echo "tether on 127.0.0.1:$tp in front of CB_Server_1 (:$n1) and CB_Server_2 (:$n2); load for $DURATION"
echo "HTTPS on 127.0.0.1:$sp (self-signed; its fingerprint is in $logdir/tether.log)"
echo "status page: http://127.0.0.1:$ap/status (metrics: /metrics)"
status=0
"$BIN/tether-bench" load --target "http://127.0.0.1:$tp" --scenario mixed --duration "$DURATION" || status=$?
if command -v curl >/dev/null; then
  echo
  echo "one request over HTTPS: $(curl -sk -o /dev/null -w '%{http_code} from %header{x-node}' \
    "https://localhost:$sp/cobrowse/resource?bytes=10" 2>/dev/null || echo 'curl failed')"
fi
echo
echo "tether's view (/status):"
curl -s "http://127.0.0.1:$ap/status" 2>/dev/null | grep -E '"(name|state|ws_sessions|answers|errors_5xx)"' | paste - - - - - || true
stop_all
echo
echo "tether access log: $(wc -l <"$logdir/access.log") lines in $logdir/access.log (process log: $logdir/tether.log)"
exit $status
