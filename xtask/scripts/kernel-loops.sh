#!/bin/bash
# Times Osprey's kernel programs on one operation at a time (docs/benchmarks.md, "What changed,
# measured program by program"): starts the agent binary BIN with the rule pack, runs each LOOP
# (xtask/scripts/kernel-loops.py) N times as nobody with kernel.bpf_stats_enabled=1, and prints
# the runs and ns a run of every program that ran at least 10,000 times. Root; the machine to
# itself. To compare two builds, alternate them: the host's noise is larger than most steps.
#
# usage: xtask/scripts/kernel-loops.sh BIN N LOOP [LOOP ...]
#   e.g. xtask/scripts/kernel-loops.sh target/release/osprey 100000 rename_unique write_pipe
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,9p' "$0"; exit 2; }
bin=$(realpath "$1"); n=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
rules=$(cd "$here/../../rules" && pwd)
work=$(mktemp -d)
agent=""
trap '[ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null; sysctl -q kernel.bpf_stats_enabled=0; rm -rf "$work"' EXIT
printf 'rules:\n  paths:\n    - %s\nrecorder:\n  path: %s/recorder.db\n' "$rules" "$work" > "$work/config.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" run --config "$work/config.yaml" --health-listen "127.0.0.1:$port" > /dev/null 2> "$work/agent.log" &
agent=$!
for _ in $(seq 1 180); do
    curl -sf "127.0.0.1:$port/readyz" > /dev/null && break
    kill -0 "$agent" 2>/dev/null || { tail -5 "$work/agent.log"; exit 1; }
    sleep 0.5
done
cp "$here/kernel-loops.py" "$work/" && chmod a+rx "$work" "$work/kernel-loops.py"
for loop in "$@"; do
    sysctl -q kernel.bpf_stats_enabled=1
    bpftool prog show -j > "$work/before.json"
    runuser -u nobody -- python3 "$work/kernel-loops.py" "$loop" "$n"
    bpftool prog show -j > "$work/after.json"
    sysctl -q kernel.bpf_stats_enabled=0
    echo "== $loop ($n)"
    python3 - "$work/before.json" "$work/after.json" <<'PY'
import json, sys
before = {p["id"]: p for p in json.load(open(sys.argv[1]))}
for p in json.load(open(sys.argv[2])):
    q = before.get(p["id"])
    if not q or "run_cnt" not in p:
        continue
    runs = p["run_cnt"] - q.get("run_cnt", 0)
    ns = p["run_time_ns"] - q.get("run_time_ns", 0)
    if runs >= 10000:
        print(f"  {p.get('name', '?'):20} runs {runs:9} ns/run {ns / runs:7.0f}")
PY
done
