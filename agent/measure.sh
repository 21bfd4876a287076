#!/usr/bin/env bash
# Prints the health agent's footprint: the size of the static release
# binaries dist.sh builds (arm64 is the Pi's; target: <= 2 MiB) and the
# resident memory of `pictl-agent serve` on this host (target: <= 4 MiB),
# peak (VmHWM) and current (VmRSS), after 200 requests, with publishing
# configured against an API that refuses connections (the TLS set-up and
# the publishing thread are live; a handshake costs transient buffers only)
# and the pod-network metrics listener on 127.0.0.2 (metrics_listen; all of
# 127/8 is local), which gets every other /metrics and /healthz scrape.
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
port=$((20000 + RANDOM % 20000))
# Any PEM certificate will do as a trust root; the API is not there anyway.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=measure \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 1 2>/dev/null
cat >"$dir/publish.conf" <<CONF
server = https://127.0.0.1:1
node = measure
token_file = $dir/token
ca_file = $dir/ca.crt
interval_seconds = 1
metrics_listen = 127.0.0.2:$((port + 1))
metrics_peers = 127.0.0.0/8
CONF
"$host" serve --listen "127.0.0.1:$port" --publish-config "$dir/publish.conf" 2>"$dir/log" &
pid=$!
# /healthz answers 503 on an unhealthy node (this host runs no K3s): any answer will do.
get() { curl -s -o /dev/null "http://$1$2" || true; }
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
pod=127.0.0.2:$((port + 1))
for _ in $(seq 50); do curl -s -o /dev/null "http://$pod/healthz" && break; sleep 0.1; done
for i in $(seq 200); do
    case $((i % 6)) in
    0) get "127.0.0.1:$port" /metrics ;; 1) get "127.0.0.1:$port" /v1/report ;;
    2) get "127.0.0.1:$port" /healthz ;; 3) get "$pod" /metrics ;;
    4) get "$pod" /healthz ;; *) get "127.0.0.1:$port" /v1/report ;;
    esac
done
sleep 2
report=$(curl -s "http://127.0.0.1:$port/v1/report")
awk '/^VmHWM|^VmRSS|^Threads/ { printf "%s %d%s\n", $1, $2, ($1 == "Threads:" ? "" : sprintf(" KiB (%.2f MiB)", $2 / 1024)) }' "/proc/$pid/status" | sed 's/^Vm/rss Vm/'
echo "publishing: $(grep -o '"publishing":{[^}]*"state":"[a-z]*"' <<<"$report" | grep -o '"state":"[a-z]*"' || true)"
echo "pod listener: $(grep -o '"metrics_listener":{[^}]*}' <<<"$report" || true), pod /metrics: $(curl -s -o /dev/null -w '%{http_code}' "http://$pod/metrics")"
