#!/usr/bin/env bash
# Prints the health agent's footprint: the size of the static release
# binaries dist.sh builds (arm64 is the Pi's; target: <= 2 MiB) and the
# resident memory of `pictl-agent serve` on this host (target: <= 4 MiB),
# peak (VmHWM) and current (VmRSS), after 200 requests, with publishing
# configured against an API that refuses connections (the TLS set-up and
# the publishing thread are live; a handshake costs transient buffers only).
#
#   agent/measure.sh [BINARY_FOR_THIS_HOST]
#
# Figures, not assertions: the targets are checked by reading them.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)

arm64=$("$ROOT/dist.sh" --build arm64 pictl-agent pictl-agent)
host=${1:-$("$ROOT/dist.sh" --build amd64 pictl-agent pictl-agent)}
size() { stat -c %s "$1"; }
printf 'binary arm64 (static, %s): %d bytes (%.2f MiB)\n' "$(file -b "$arm64" | cut -d, -f1-2)" "$(size "$arm64")" "$(echo "$(size "$arm64") / 1048576" | bc -l)"
printf 'binary host  (static): %d bytes\n' "$(size "$host")"

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
printf 'x%.0s' $(seq 40) >"$dir/token"
# Any PEM certificate will do as a trust root; the API is not there anyway.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=measure \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 1 2>/dev/null
cat >"$dir/publish.conf" <<CONF
server = https://127.0.0.1:1
node = measure
token_file = $dir/token
ca_file = $dir/ca.crt
interval_seconds = 1
CONF
port=$((20000 + RANDOM % 20000))
"$host" serve --listen "127.0.0.1:$port" --publish-config "$dir/publish.conf" 2>"$dir/log" &
pid=$!
# /healthz answers 503 on an unhealthy node (this host runs no K3s): any answer will do.
get() { curl -s -o /dev/null "http://127.0.0.1:$port$1" || true; }
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
for i in $(seq 200); do
    case $((i % 3)) in
    0) p=/metrics ;; 1) p=/v1/report ;; *) p=/healthz ;;
    esac
    get "$p"
done
sleep 2
state=$(curl -s "http://127.0.0.1:$port/v1/report" | grep -o '"state":"[a-z]*"' || true)
awk '/^VmHWM|^VmRSS/ { printf "rss %s %d KiB (%.2f MiB)\n", $1, $2, $2 / 1024 }' "/proc/$pid/status"
echo "publishing: $state"
