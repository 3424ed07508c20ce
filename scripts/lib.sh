# Shared by the scripts that start fake nodes and tether on loopback:
# source it, then use start_nodes, wait_port and the pids array (every PID
# appended there is stopped on exit, by PID).

# free_port prints a loopback port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# start_nodes LOGDIR: two fake co-browse nodes, CB_Server_1 on $n1 and
# CB_Server_2 on $n2.
start_nodes() {
  n1=$(free_port)
  n2=$(free_port)
  "$BIN/tether-bench" node --name CB_Server_1 --listen "127.0.0.1:$n1" >"$1/node1.log" 2>&1 &
  pids+=($!)
  "$BIN/tether-bench" node --name CB_Server_2 --listen "127.0.0.1:$n2" >"$1/node2.log" 2>&1 &
  pids+=($!)
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (5 s at most).
wait_port() {
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start_tether LOGDIR [FLAG...]: tether in front of both nodes (start_nodes
# first) on 127.0.0.1:$tp, its admin on 127.0.0.1:$ap (both picked now),
# health checked every second, access log off; its PID in tether_pid.
start_tether() {
  local dir=$1
  shift
  start_tether_as tether "$dir" "$@"
}

# start_tether_as NAME LOGDIR [FLAG...]: start_tether for several tethers
# side by side: its logs in LOGDIR/NAME.out (access log) and
# LOGDIR/NAME.log; sets tp, ap and tether_pid as start_tether does.
start_tether_as() {
  local name=$1 dir=$2
  shift 2
  tp=$(free_port)
  ap=$(free_port)
  "$BIN/tether" --listen "127.0.0.1:$tp" \
    --node "CB_Server_1=http://127.0.0.1:$n1" \
    --node "CB_Server_2=http://127.0.0.1:$n2" \
    --admin "127.0.0.1:$ap" --access-log=false --health-interval 1s --health-timeout 500ms \
    "$@" >"$dir/$name.out" 2>"$dir/$name.log" &
  pids+=($!)
  tether_pid=$!
}

# wait_ok URL: until GET URL answers 200 (5 s at most).
wait_ok() {
  for _ in $(seq 1 50); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null)" == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

# finish_run STATUS LOGDIR: the end of a run against start_tether's
# tether: a tether that exited during the run fails it; every process
# started stops; exits with the run's status.
finish_run() {
  local status=$1 dir=$2
  if ! kill -0 "$tether_pid" 2>/dev/null; then
    echo "tether exited during the run; its log: $dir/tether.log" >&2
    status=1
  fi
  stop_all
  echo
  echo "logs in $dir"
  exit "$status"
}
