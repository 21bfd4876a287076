#!/usr/bin/env bash
# Lays out a K3s release mirror for the lab from the simulator:
#   <dir>/<version>/{k3s,k3s-arm64,k3s-armhf,sha256sum-amd64.txt,sha256sum-arm64.txt,sha256sum-arm.txt}
# for two versions whose binaries differ and report their own version. The
# simulator is built once; each file is a stripped copy with a trailer naming its
# version and architecture (the binary reads the trailer from /proc/self/exe; an
# arm file run on x86_64 fails like a foreign binary would). Idempotent: files
# are only rewritten when their content changes.
set -euo pipefail

usage() { echo "usage: $0 <mirror-dir>" >&2; exit 2; }
[ $# -eq 1 ] || usage
out=$1
versions=(v1.32.5+k3s1 v1.33.1+k3s1)

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# K3S_SIM_BIN: use a simulator built elsewhere (a shared target dir may hold
# another checkout's build).
if [ -n "${K3S_SIM_BIN:-}" ]; then
    bin=$K3S_SIM_BIN
else
    (cd "$root" && cargo build --quiet -p k3s-sim)
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/k3s"
fi
[ -x "$bin" ] || { echo "mirror.sh: $bin was not built" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
strip -o "$work/k3s.stripped" "$bin"

# install_if_changed SRC DEST: atomic, and untouched when identical.
install_if_changed() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        rm -f "$1"
        return
    fi
    chmod "$3" "$1"
    mv -f "$1" "$2"
}

for v in "${versions[@]}"; do
    d="$out/$v"
    mkdir -p "$d"
    for pair in amd64:k3s arm64:k3s-arm64 arm:k3s-armhf; do
        arch=${pair%%:*}
        file=${pair#*:}
        cp "$work/k3s.stripped" "$work/$file"
        printf '\n#K3S-SIM-ARCH=%s\n#K3S-SIM-VERSION=%s\n' "$arch" "$v" >>"$work/$file"
        install_if_changed "$work/$file" "$d/$file" 0755
        (cd "$d" && sha256sum "$file") >"$work/sha256sum-$arch.txt"
        install_if_changed "$work/sha256sum-$arch.txt" "$d/sha256sum-$arch.txt" 0644
    done
done
echo "mirror.sh: ${versions[*]} in $out"
