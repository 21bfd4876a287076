#!/usr/bin/env bash
# Latency of /healthz while idle and stalled clients hold connections open:
# builds the release agent, serves on loopback, opens IDLE connections that
# send nothing and STALLED ones that send half a request head and stop, keeps
# them open, then times REQUESTS sequential /healthz requests and prints
# p50/p99/max and the agent's RSS. Figures, not assertions.
# Usage: agent/bench-idle.sh [REQUESTS] (env IDLE=100 STALLED=20 PORT=19753)
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-200}"
idle="${IDLE:-100}"
stalled="${STALLED:-20}"
port="${PORT:-19753}"

cargo build --release -q -p pictl-agent
# The target directory may be shared with other checkouts: run a private copy.
bin="$(mktemp -d)/pictl-agent"
cp "${CARGO_TARGET_DIR:-target}/release/pictl-agent" "$bin"

"$bin" serve --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$(dirname "$bin")"' EXIT
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
done

python3 - "$port" "$requests" "$idle" "$stalled" "$pid" <<'PY'
import socket, sys, time
port, n, idle, stalled, pid = (int(a) for a in sys.argv[1:])
held = []
for i in range(idle + stalled):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if i >= idle:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: stalls
    held.append(s)
time.sleep(0.2)
lat, codes = [], {}
for _ in range(n):
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    lat.append(time.monotonic() - t)
    code = data.split(b" ", 2)[1].decode() if data else "none"
    codes[code] = codes.get(code, 0) + 1
lat.sort()
ms = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM"))]
print(f"/healthz with {idle} idle + {stalled} stalled connections held: {n} requests, "
      f"status {codes}, p50={ms(0.5):.2f} ms p99={ms(0.99):.2f} ms max={lat[-1]*1000:.2f} ms; "
      f"rss={rss[0]} kB peak={rss[1]} kB")
PY
