#!/usr/bin/env bash
# Reproduces bench/results.{md,svg} (select shell vs tokio and a bare epoll
# loop, TCP and UDP, loopback) and bench/tun/results.{md,svg} (selecho tun,
# in a network namespace of its own).
# Needs root for the TUN part; skips it with a message otherwise.
# Servers that do not serve UDP yet are left out of the UDP loads by the
# runner (it says so); `selecho --threads 2` runs if selecho has the flag.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p selecho -p selecho-bench
bin=target/release

variants=()
if "$bin/selecho" --help | grep -q -- '--threads'; then
  variants+=(--selecho-variant "selecho-t2=--threads 2")
else
  echo "skipping selecho --threads 2: this selecho has no --threads flag" >&2
fi
# Every load comes from 127.0.0.1: selecho's per-source UDP rate limit
# (1000 answers a second by default) would be the figure, so it is off,
# as tokio's reference has none.
"$bin/selecho-bench" --rounds "${ROUNDS:-3}" --secs "${SECS:-2}" \
  --selecho-args "--listen 127.0.0.1:0 --udp-rate 0" "${variants[@]}" "$@"

if [ "$(id -u)" != 0 ] || [ ! -e /dev/net/tun ]; then
  echo "skipping the TUN benchmark: needs root and /dev/net/tun" >&2
  exit 0
fi
ns="selecho-bench-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link set lo up
mkdir -p bench/tun
"$bin/selecho-bench" --rounds "${ROUNDS:-3}" --secs "${SECS:-2}" --out-dir bench/tun \
  --only tun --server-netns "tun=$ns" \
  --server "tun=ip netns exec $ns $bin/selecho tun -q --ifname tun0 --address 10.77.0.2/24 --host-address 10.77.0.1/24 --max-conns 128" \
  --loads pingpong-1x64 --loads pingpong-10x64 --loads pingpong-100x64 --loads pingpong-100x4096 --loads stream-4x16384
