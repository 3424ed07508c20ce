#!/usr/bin/env bash
# scripts/scale-out.sh: two tethers behind an L4 tier, one killed mid-run.
#
# HAProxy in TCP mode (balance leastconn, send-proxy-v2 to each tether,
# health checks of each tether's GET /healthz on its admin port every
# 250 ms, fall 2, a refused connect redispatched to the other) in front of
# two tethers (--proxy-protocol --proxy-protocol-from 127.0.0.1/32) in
# front of two fake co-browse nodes, all on loopback ports chosen now.
# A mixed load (keep-alive GETs and co-browse WebSocket pairs) and a
# long-poll load run through HAProxy for DURATION seconds (default 20);
# KILL_AT seconds in (default 8) the first tether gets kill -9.
#
# It reports: what the nodes saw in X-Forwarded-For (the client, bound to
# 127.0.0.2, not HAProxy, which connects from 127.0.0.1) before and after
# the kill; how many connections the dead tether held; when HAProxy marked
# it down; the load's errors, when they happened against the kill, and each
# failed client's time from its failure to its next success (reconnect);
# sticky violations and sessions ended (a session that reached a node that
# does not own it is ended: 409); and HAProxy's log per tether: connections
# cut by the kill, connects refused.
#
# It fails (exit 1) on a wrong X-Forwarded-For, a failure before the kill,
# a client not back in service, a sticky violation or a session ended, more
# errors than connections the dead tether held, or a connection of the
# surviving tether cut. Builds nothing: run `make build` first (BIN=dir
# picks other binaries; HAPROXY=path another HAProxy); `make scale-out`
# does both. Everything started here is stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN=${BIN:-bin}
HAPROXY=${HAPROXY:-haproxy}
DURATION=${DURATION:-20}
KILL_AT=${KILL_AT:-8}
CONNS=${CONNS:-8}       # keep-alive HTTP connections of the mixed load
SESSIONS=${SESSIONS:-40} # co-browse sessions of the mixed load (two WebSockets each)
POLLS=${POLLS:-20}       # long-poll co-browse sessions
CLIENT_IP=127.0.0.2      # the probes' source: what the nodes must see

for b in tether tether-bench; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 2; }
done
command -v "$HAPROXY" >/dev/null || { echo "no HAProxy ($HAPROXY): install haproxy or set HAPROXY" >&2; exit 2; }
for v in DURATION KILL_AT CONNS SESSIONS POLLS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$v must be a whole number, not ${!v}" >&2; exit 2; }
done
((DURATION >= 6 && DURATION <= 600)) || { echo "DURATION must be 6..600 (seconds)" >&2; exit 2; }
((KILL_AT >= 2 && KILL_AT <= DURATION - 4)) || { echo "KILL_AT must be 2..DURATION-4 (seconds)" >&2; exit 2; }

ulimit -Sn "$(ulimit -Hn)"
logdir=$(mktemp -d)
start_nodes "$logdir"
pp=(--proxy-protocol --proxy-protocol-from 127.0.0.1/32)
start_tether_as tether1 "$logdir" "${pp[@]}"
t1=$tp; a1=$ap; t1_pid=$tether_pid
start_tether_as tether2 "$logdir" "${pp[@]}"
t2=$tp; a2=$ap; t2_pid=$tether_pid

hp=$(free_port)
cat >"$logdir/haproxy.cfg" <<EOF
global
    log stdout format iso local0 info
    maxconn 4000
    stats socket $logdir/haproxy.sock mode 600 level user

defaults
    mode tcp
    log global
    log-format "conn %ci:%cp %b/%s from %bi:%bp retries %rc Tc %Tc Tt %Tt bytes %B end %ts"
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    timeout check 500ms
    retries 2
    option redispatch 1

frontend l4
    bind 127.0.0.1:$hp
    default_backend tethers

backend tethers
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 250ms fall 2 rise 2 send-proxy-v2
    server tether1 127.0.0.1:$t1 check port $a1
    server tether2 127.0.0.1:$t2 check port $a2
EOF
"$HAPROXY" -c -q -f "$logdir/haproxy.cfg" || { echo "haproxy -c refused $logdir/haproxy.cfg" >&2; exit 1; }
"$HAPROXY" -db -f "$logdir/haproxy.cfg" >"$logdir/haproxy.log" 2>&1 &
pids+=($!); haproxy_pid=$!

for p in "$n1" "$n2" "$t1" "$t2" "$hp"; do
  wait_port "$p" || { echo "port $p did not open; logs in $logdir" >&2; exit 1; }
done
wait_ok "http://127.0.0.1:$a1/healthz" && wait_ok "http://127.0.0.1:$a2/healthz" ||
  { echo "a tether's /healthz did not answer 200; logs in $logdir" >&2; exit 1; }

# metric ADMINPORT NAME: the sum of NAME's samples in a tether's /metrics.
metric() {
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
# server_states: each tether's state in HAProxy ("tether1 UP tether2 UP").
server_states() {
  python3 - "$logdir/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"show stat\n"); out = b""
while chunk := s.recv(65536): out += chunk
rows = [l.split(",") for l in out.decode().splitlines() if l.startswith("tethers,tether")]
print(" ".join(f"{r[1]} {r[17]}" for r in rows))
PY
}
# probe_xff N: N GETs of /cobrowse/echo-headers through HAProxy from
# CLIENT_IP, each on its own connection; prints the distinct
# "X-Forwarded-For X-Real-IP" pairs the nodes saw.
probe_xff() {
  for _ in $(seq 1 "$1"); do
    curl -s --max-time 2 --interface "$CLIENT_IP" "http://127.0.0.1:$hp/cobrowse/echo-headers" |
      awk -F': ' 'tolower($1) == "x-forwarded-for" { x = $2 } tolower($1) == "x-real-ip" { r = $2 }
        END { printf "%s %s\n", (x == "" ? "-" : x), (r == "" ? "-" : r) }'
  done | sort | uniq -c | awk '{ printf "%s%s x%d (X-Real-IP %s)", sep, $2, $1, $3; sep = ", " } END { print "" }'
}

status=0
fail() { echo "FAIL: $*"; status=1; }

echo "HAProxy (tcp, leastconn, send-proxy-v2, /healthz checks every 250ms, fall 2) on 127.0.0.1:$hp"
echo "  -> tether1 (pid $t1_pid) 127.0.0.1:$t1, admin :$a1; tether2 (pid $t2_pid) 127.0.0.1:$t2, admin :$a2"
echo "  -> CB_Server_1 :$n1, CB_Server_2 :$n2; logs in $logdir"
echo "HAProxy sees: $(server_states)"
r1=$(metric "$a1" tether_node_requests_total); r2=$(metric "$a2" tether_node_requests_total)
xff_before=$(probe_xff 8)
d1=$(($(metric "$a1" tether_node_requests_total) - r1)); d2=$(($(metric "$a2" tether_node_requests_total) - r2))
echo "X-Forwarded-For at the nodes, 8 probes from $CLIENT_IP ($d1 via tether1, $d2 via tether2): $xff_before"
[[ "$xff_before" == "$CLIENT_IP x8 (X-Real-IP $CLIENT_IP)" ]] || fail "the nodes saw $xff_before, want $CLIENT_IP"
((d1 > 0 && d2 > 0)) || echo "  (the probes did not reach both tethers)"

uptime_before=$(cut -d' ' -f1-3 /proc/loadavg)
target="http://127.0.0.1:$hp"
"$BIN/tether-bench" load --target "$target" --scenario mixed --duration "${DURATION}s" \
  --conns "$CONNS" --sessions "$SESSIONS" --json --log-level warn >"$logdir/mixed.json" 2>"$logdir/mixed.err" &
pids+=($!); mixed_pid=$!
"$BIN/tether-bench" load --target "$target" --scenario longpoll --duration "${DURATION}s" \
  --sessions "$POLLS" --json --log-level warn >"$logdir/longpoll.json" 2>"$logdir/longpoll.err" &
pids+=($!); poll_pid=$!
echo "load: mixed ($CONNS keep-alive connections, $SESSIONS co-browse sessions) and longpoll ($POLLS sessions) for ${DURATION}s; kill -9 tether1 at ${KILL_AT}s"

sleep "$KILL_AT"
held1=$(metric "$a1" tether_client_connections); ws1=$(metric "$a1" tether_node_websocket_sessions)
held2=$(metric "$a2" tether_client_connections); ws2=$(metric "$a2" tether_node_websocket_sessions)
kill_ns=$(date +%s%N)
kill -9 "$t1_pid"
wait "$t1_pid" 2>/dev/null || true
gone_ms=$((($(date +%s%N) - kill_ns) / 1000000))
echo "killed tether1 at $(date -d "@${kill_ns:0:10}.${kill_ns:10:3}" +%T.%3N): it held $held1 client connections ($ws1 WebSocket sessions); tether2 held $held2 ($ws2)"
echo "tether1 reaped ${gone_ms}ms after the kill (its sockets close when its last thread has exited)"

# HAProxy's view, polled until it has tether1 down (bounded).
for _ in $(seq 1 50); do
  [[ "$(server_states)" == *"tether1 DOWN"* ]] && break
  sleep 0.1
done
echo "HAProxy sees: $(server_states)"
xff_after=$(probe_xff 4)
echo "X-Forwarded-For at the nodes after the kill, 4 probes from $CLIENT_IP: $xff_after"
[[ "$xff_after" == "$CLIENT_IP x4 (X-Real-IP $CLIENT_IP)" ]] || fail "after the kill the nodes saw $xff_after, want $CLIENT_IP"

load_status=0
for p in "$mixed_pid" "$poll_pid"; do
  # Bounded: each load ends DURATION + its timeout (5s) + 1s after its start.
  wait "$p" || load_status=$?
done
failovers2=$(metric "$a2" tether_node_failovers_total)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
python3 - "$logdir" "$kill_ns" "$held1" "$failovers2" <<'PY' || status=1
import json, re, sys, datetime as dt
logdir, kill_ns, held1, failovers2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
kill = dt.datetime.fromtimestamp(kill_ns / 1e9, dt.timezone.utc)
def at(s):  # RFC 3339 with up to nanoseconds
    s = re.sub(r"(\.\d{6})\d*", r"\1", s).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(s)
def ms(d): return f"{d.total_seconds() * 1000:+.0f}ms"
bad = []
errors = 0
reps = {}
for name in ("mixed", "longpoll"):
    try:
        reps[name] = json.load(open(f"{logdir}/{name}.json"))
    except Exception as e:
        print(f"{name}: no report ({e}); see {logdir}/{name}.err"); bad.append(f"{name} gave no report"); continue
print("load       ops           errors  sticky_viol  ended  reconnects  p50      p99      max      unrecovered  failures after the kill")
for name, r in reps.items():
    ops = " ".join(f"{k} {r[k]['ops']}" for k in ("http", "ws", "poll") if r.get(k))
    rc = r.get("reconnect")
    errors += r["error_count"]
    if rc:
        first, last = at(rc["first_error"]) - kill, at(rc["last_error"]) - kill
        line = (f"{rc['count']:<10}  {rc['p50_us']/1000:<7.1f}  {rc['p99_us']/1000:<7.1f}  {rc['max_us']/1000:<7.1f}  "
                f"{rc['unrecovered']:<11}  {ms(first)} .. {ms(last)}")
        if first.total_seconds() < 0: bad.append(f"{name}: a failure {ms(first)} before the kill")
        if rc["unrecovered"]: bad.append(f"{name}: {rc['unrecovered']} clients not back in service")
    else:
        line = "0           -        -        -        0            -"
    print(f"{name:<10} {ops:<13} {r['error_count']:<7} {r['sticky_violations']:<12} {r['sessions_ended']:<6} {line}")
    for k, v in sorted(r["errors"].items()):
        print(f"             {k} {v}")
    if r["sticky_violations"] or r["sessions_ended"]:
        bad.append(f"{name}: {r['sticky_violations']} sticky violations, {r['sessions_ended']} sessions ended")
print("(reconnect: a client's first failure to its next success, in ms, the harness's 50 ms pause included)")
if errors > held1:
    bad.append(f"{errors} errors, more than the {held1} connections the dead tether held")
print(f"\nerrors {errors}, the dead tether held {held1} client connections; tether2 moved {failovers2} sessions to another node")
if failovers2:
    bad.append(f"tether2 moved {failovers2} sessions to another node")

# HAProxy's log (ISO-stamped lines): when it had tether1 down, and per
# tether the connections that ended within a second of the kill, and how.
down = None
per = {}
for line in open(f"{logdir}/haproxy.log"):
    if not line[:1].isdigit(): continue
    stamp = at(line.split(" ", 1)[0])
    if down is None and "Server tethers/tether1 is DOWN" in line:
        down = stamp
    m = re.search(r"conn \S+ tethers/(\S+) from (\S+) retries (\S+) Tc \S+ Tt \S+ bytes \S+ end (\S+)", line)
    if not m: continue
    srv, src, retries, end = m.groups()
    d = per.setdefault(srv, {"conns": 0, "at_kill": 0, "reset": 0, "redispatched": 0, "from": set()})
    d["conns"] += 1
    d["from"].add(src.rsplit(":", 1)[0])
    if 0 <= (stamp - kill).total_seconds() < 1:
        d["at_kill"] += 1
        if end[0] == "S": d["reset"] += 1  # ended by an error on tether's side (SD, SC, ...)
    if retries.startswith("+"): d["redispatched"] += 1
if down:
    print(f"HAProxy marked tether1 DOWN {ms(down - kill)} after the kill")
print("HAProxy's log, per tether (connections HAProxy made to it; ended within 1s of the kill; of those, ended by an error on tether's side):")
for srv in sorted(per):
    d = per[srv]
    print(f"  {srv}: {d['conns']} connections from {'/'.join(sorted(d['from']))}; {d['at_kill']} ended at the kill, "
          f"{d['reset']} of them by tether's side; {d['redispatched']} redispatched after a refused connect")
print("(a session's page, customer and agent connections are balanced one by one: a session may use both tethers, and its")
print(" client closes the surviving legs of a session whose other leg was cut)")
if per.get("tether2", {}).get("reset"):
    bad.append(f"{per['tether2']['reset']} connections of tether2 ended by an error on its side at the kill")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
echo "load average (1, 5, 15 min): $uptime_before before the load, $load_after after ($(nproc) CPUs, shared)"
((load_status == 0)) || echo "(the load generators exit 1 on any error: the kill makes some)"
kill -0 "$t2_pid" 2>/dev/null || fail "tether2 exited; its log: $logdir/tether2.log"
kill -0 "$haproxy_pid" 2>/dev/null || fail "HAProxy exited; its log: $logdir/haproxy.log"
stop_all
((status == 0)) && echo "PASS"
exit $status
