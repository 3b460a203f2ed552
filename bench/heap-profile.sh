#!/usr/bin/env bash
# Profiles the heap an idle socket costs the gateway. It runs the release gateway under heaptrack and
# connects SOCKETS idle websocket clients with the bench load generator. The heap at its peak, grouped
# by allocation site and divided by SOCKETS, goes to bench/heap-profile.md, which make bench appends
# to bench/REPORT.md.
#
# Usage: bench/heap-profile.sh [SOCKETS]   (default 3000; needs heaptrack, from Debian's packages)
set -euo pipefail
cd "$(dirname "$0")/.."

sockets=${1:-3000}
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/socketfleet/target}
gateway=$target_dir/release/socketfleet-gateway
bench=$target_dir/release/socketfleet-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v heaptrack >/dev/null || { echo "heap-profile: heaptrack not found; apt-get install heaptrack" >&2; exit 1; }
[[ -x $gateway && -x $bench ]] || { echo "heap-profile: build first: cargo build --release -p socketfleet-gateway -p socketfleet-bench" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

heaptrack -o "$work/gateway" "$gateway" --port 3390 --admin-port 9390 --bind-address 127.0.0.1 \
  --max-connections $((sockets + 100)) >"$work/heaptrack.log" 2>&1 &
heaptrack_pid=$!
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:9390/livez >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs http://127.0.0.1:9390/livez >/dev/null || { echo "heap-profile: gateway did not start; log:" >&2; cat "$work/heaptrack.log" >&2; exit 1; }

# Hold the sockets for a few seconds past the moment all are connected, then close them.
(sleep 15; echo stats; echo stop) | "$bench" hold --target 127.0.0.1:3390 --source 127.0.0.9 \
  --connections "$sockets" >"$work/hold.out"
grep -q "\"connected\":$sockets," "$work/hold.out" || { echo "heap-profile: not every socket connected:" >&2; cat "$work/hold.out" >&2; exit 1; }

# heaptrack's launcher is the parent of the gateway process; stop the gateway by its own pid.
gateway_pid=$(pgrep -P "$heaptrack_pid" -f socketfleet-gateway | head -1)
kill -TERM "$gateway_pid"
wait "$heaptrack_pid" || true

heaptrack_print -f "$work"/gateway.*zst --print-peaks 0 --print-allocators 0 --print-temporary 0 \
  --print-leaks 0 --flamegraph-cost-type peak --print-flamegraph "$work/peak.txt" >/dev/null

python3 - "$work/peak.txt" "$sockets" >bench/heap-profile.md <<'EOF'
import collections
import sys

# Each stack is read from the allocation site outwards, and the first frame that matches a group
# decides; among groups matching that frame the first listed wins.
GROUPS = [
    ("tokio task (the websocket's future)", ["bind_new_task"]),
    ("tokio I/O registration", ["registration_set"]),
    ("hyper HTTP/1 connections still in their handshake at the peak", ["serve_connection", "poll_read_from_io"]),
    ("room index (socketioxide-core's local adapter, private room)", ["add_all", "add_sockets"]),
    ("engine.io session", ["(session.rs)"]),
    ("Socket.IO socket and its extension", ["(socket.rs)", "set_extension"]),
    ("namespace socket map", ["(namespace.rs)"]),
    ("connection registry", ["(connection/mod.rs)", "register<"]),
]

path, sockets = sys.argv[1], int(sys.argv[2])
totals = collections.Counter()
for line in open(path):
    stack, _, cost = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    group = "other"
    for frame in reversed(frames):
        match = next((name for name, patterns in GROUPS if any(p in frame for p in patterns)), None)
        if match:
            group = match
            break
    totals[group] += int(cost)

total = sum(totals.values())
print("## Heap per idle socket, gateway\n")
print(f"`bench/heap-profile.sh {sockets}`: the release gateway under heaptrack, in-memory adapter,")
print(f"{sockets} idle websocket sockets; heap at its peak divided by {sockets}, grouped by allocation site.")
print("The total includes the gateway's fixed heap spread over the sockets.\n")
print("| Allocated by | Bytes per socket |\n|---|---|")
for name, cost in totals.most_common():
    print(f"| {name} | {cost / sockets:.0f} |")
print(f"| **total** | **{total / sockets:.0f}** |")
EOF
cat bench/heap-profile.md
