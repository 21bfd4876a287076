#!/usr/bin/env bash
# Memory figure for the agent: build the release binary, serve on loopback,
# fire a bounded number of requests at /metrics and /v1/report, then print
# VmRSS/VmHWM and the binary size. Usage: agent/bench.sh [REQUESTS]
set -euo pipefail

cd "$(dirname "$0")/.."
requests="${1:-2000}"
port="${PORT:-19750}"
bin="${CARGO_TARGET_DIR:-target}/release/pictl-agent"

cargo build --release -p pictl-agent >&2

"$bin" serve --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
done

mem() { grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | tr -s ' \t' ' ' | paste -sd' ' -; }
echo "idle after first request: $(mem)"

python3 - "$port" "$requests" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
paths = ["/metrics", "/v1/report"]
codes, sizes = {}, {}
start = time.monotonic()
for i in range(n):
    path = paths[i % 2]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    code = data.split(b" ", 2)[1].decode()
    codes[code] = codes.get(code, 0) + 1
    sizes[path] = len(data.split(b"\r\n\r\n", 1)[1])
took = time.monotonic() - start
print(f"{n} requests in {took:.2f} s ({n / took:.0f}/s), status {codes}, body bytes {sizes}")
PY

echo "after load: $(mem)"
echo "binary: $bin $(stat -c %s "$bin") bytes ($(( $(stat -c %s "$bin") / 1024 )) KiB)"
