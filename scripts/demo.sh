#!/usr/bin/env bash
# make demo: two fake co-browse nodes and tether on loopback ports chosen
# now, a short mixed load of HTTP requests and WebSocket sessions through
# tether, and the load generator's per-node report. Everything started here
# is stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DURATION=${DURATION:-5s}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

n1=$(free_port); n2=$(free_port); tp=$(free_port); ap=$(free_port); sp=$(free_port)
logdir=$(mktemp -d)
"$BIN/tether-bench" node --name CB_Server_1 --listen "127.0.0.1:$n1" >"$logdir/node1.log" 2>&1 & pids+=($!)
"$BIN/tether-bench" node --name CB_Server_2 --listen "127.0.0.1:$n2" >"$logdir/node2.log" 2>&1 & pids+=($!)
"$BIN/tether" --listen "127.0.0.1:$tp" \
  --node "CB_Server_1=http://127.0.0.1:$n1" \
  --node "CB_Server_2=http://127.0.0.1:$n2" \
  --tls-listen "127.0.0.1:$sp" --tls-self-signed \
  --admin "127.0.0.1:$ap" --health-interval 1s >"$logdir/access.log" 2>"$logdir/tether.log" & pids+=($!)

# Wait (bounded) until tether answers.
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$tp") 2>/dev/null; then break; fi
  sleep 0.1
done

echo "tether on 127.0.0.1:$tp in front of CB_Server_1 (:$n1) and CB_Server_2 (:$n2); load for $DURATION"
echo "HTTPS on 127.0.0.1:$sp (self-signed; fingerprint in $logdir/tether.log)"
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
cleanup
pids=()
echo
echo "tether access log: $(wc -l <"$logdir/access.log") lines in $logdir/access.log (process log: $logdir/tether.log)"
exit $status
