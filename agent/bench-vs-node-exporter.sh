#!/usr/bin/env bash
# The agent beside the usual alternative: Debian's prometheus-node-exporter,
# both serving /metrics on loopback, both scraped the same bounded number of
# times. Prints RSS (VmRSS/VmHWM), binary size, bytes per scrape and
# scrape latency. Figures, not assertions. Installs the Debian package if
# missing (as root). Usage: agent/bench-vs-node-exporter.sh [SCRAPES]
set -euo pipefail
cd "$(dirname "$0")/.."
scrapes="${1:-500}"

if ! command -v prometheus-node-exporter >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
    # The package starts a system service where systemd runs; this bench starts its own.
fi
cargo build --release -q -p pictl-agent

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"${CARGO_TARGET_DIR:-target}"/release/pictl-agent serve --listen 127.0.0.1:19751 2>/dev/null &
pids+=($!); agent=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:19752 >/dev/null 2>&1 &
pids+=($!); exporter=$!
for port in 19751 19752; do
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break; sleep 0.1; done
done

measure() { # name pid port binary
    python3 - "$3" "$scrapes" <<'PY' > /tmp/bench-scrape.$$
import sys, time, urllib.request
port, n = sys.argv[1], int(sys.argv[2])
lat, size = [], 0
for _ in range(n):
    t = time.monotonic()
    size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read())
    lat.append(time.monotonic() - t)
lat.sort()
print(f"{size} {lat[len(lat)//2]*1000:.2f} {lat[int(len(lat)*0.99)]*1000:.2f}")
PY
    read -r size p50 p99 < /tmp/bench-scrape.$$; rm -f /tmp/bench-scrape.$$
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$2/status"); hwm=$(awk '/^VmHWM/{print $2}' "/proc/$2/status")
    printf '%-26s rss=%6s kB  peak=%6s kB  binary=%6s kB  /metrics=%6s B  p50=%6s ms  p99=%6s ms\n' \
        "$1" "$rss" "$hwm" "$(( $(stat -c %s "$4") / 1024 ))" "$size" "$p50" "$p99"
}
echo "after $scrapes scrapes each (loopback, $(nproc) cores):"
measure pictl-agent "$agent" 19751 "${CARGO_TARGET_DIR:-target}"/release/pictl-agent
measure prometheus-node-exporter "$exporter" 19752 "$(command -v prometheus-node-exporter)"
