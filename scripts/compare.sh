#!/usr/bin/env bash
# make compare: tether side by side with nginx and HAProxy (and a node with
# nothing in front) on loopback. Installs nginx and HAProxy from Debian's
# packages when missing, then runs `tether-bench compare`, which starts two
# fake nodes and each peer in turn on ports chosen at run time, runs the
# http, ws-echo, wss-echo, tls-rsa, tls-ecdsa, idle and idle-wss scenarios round after
# round (TLS with an RSA-2048 and an ECDSA P-256 certificate it generates,
# the same for every peer), stops everything it started by PID and prints
# Markdown tables of medians (BENCHMARKS.md). It first prints an estimate of
# how long that takes (about 7.5 minutes with the defaults).
#
# Flags are passed on: scripts/compare.sh --rounds 5 --duration 10s
#                      scripts/compare.sh --scenarios http,tls-ecdsa
#                      scripts/compare.sh --generator both --scenarios http,ws-echo
# --generator wrk|both drives http with wrk and ws-echo with wsgen (C,
# compiled with cc at run time); wrk and gcc are installed when missing.
# Builds nothing: run `make build` first (BIN=dir picks other binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}

for b in tether tether-bench; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 2; }
done

missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
generator=go
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --generator=* | -generator=*) generator=${!i#*=} ;;
    --generator | -generator) j=$((i + 1)); generator=${!j:-go} ;;
  esac
done
if [[ $generator == wrk || $generator == both ]]; then
  command -v wrk >/dev/null || missing+=(wrk)
  command -v cc >/dev/null || missing+=(gcc)
fi
if ((${#missing[@]})); then
  echo "installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # A service the packages may start on their default ports is left alone:
  # the comparison runs its own processes on ports chosen at run time.
fi
export PATH="$PATH:/usr/sbin:/sbin"

# Each idle session holds descriptors in the load generator and the peer.
ulimit -Sn "$(ulimit -Hn)"

exec "$BIN/tether-bench" compare --tether-bin "$BIN/tether" --log-level warn "$@"
