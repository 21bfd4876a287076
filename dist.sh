#!/usr/bin/env bash
# Builds what a pictl release carries, static binaries into dist/ with
# SHA256SUMS: `pictl-<arch>` (the controller, to run from a laptop or a Pi)
# and `pictl-agent-<arch>` (the health agent) for every arch given, the
# host's pictl as `pictl`, and one archive per arch,
# `pictl-<version>-linux-<arch>.tar.gz`, holding that arch's pictl with every
# agent beside it. pictl finds `pictl-agent-<arch>` beside itself (and
# target/<triple>/release/pictl-agent next to a cargo build), so
# `pictl apply` installs the agent on Pis with no `[agent] binaries` entry.
#
#   ./dist.sh [--out DIR] [--agents-only] [ARCH...]
#                                       ARCH: amd64 arm64 armhf (default: all three);
#                                       --agents-only: the host pictl and the agents
#                                       (a cross-built pictl takes minutes per arch)
#   ./dist.sh --build ARCH PACKAGE BIN  cross-build one release binary, print its path
#                                       (tests/k3s-sim/mirror.sh builds k3s-arm64 this way)
#
# Cross toolchains (tests/lab/install-deps.sh installs them on Debian):
#   arm64: rustup target aarch64-unknown-linux-musl, linked by rust-lld; crates
#          with C (aws-lc-sys) also need gcc-aarch64-linux-gnu.
#   armhf: rustup target armv7-unknown-linux-musleabihf (rust-lld), or else
#          armv7-unknown-linux-gnueabihf linked statically by
#          gcc-arm-linux-gnueabihf (+ libc6-dev-armhf-cross).
#   amd64: x86_64-unknown-linux-musl, or else x86_64-unknown-linux-gnu static.
# An arch whose toolchain is missing is skipped with the command that fixes it
# (and the exit status is 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ALL_ARCHES=(amd64 arm64 armhf)

say() { echo "dist: $*" >&2; }
die() { echo "dist: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

installed_targets() { rustup target list --installed 2>/dev/null || rustc -vV | awk '/^host:/ { print $2 }'; }

# The Rust target for ARCH: the first candidate whose std is installed.
target_for() {
    local arch=$1 t have
    have=$(installed_targets)
    case "$arch" in
    amd64) set -- x86_64-unknown-linux-musl x86_64-unknown-linux-gnu ;;
    arm64) set -- aarch64-unknown-linux-musl ;;
    armhf) set -- armv7-unknown-linux-musleabihf armv7-unknown-linux-gnueabihf ;;
    *) die "unknown arch '$arch' (amd64, arm64, armhf)" ;;
    esac
    for t in "$@"; do
        grep -qx "$t" <<<"$have" && { echo "$t"; return 0; }
    done
    return 1
}

# The fix for a missing target or C toolchain, shown when an arch is skipped.
how_to() {
    case "$1" in
    amd64) echo "rustup target add x86_64-unknown-linux-musl" ;;
    arm64) echo "rustup target add aarch64-unknown-linux-musl; apt-get install gcc-aarch64-linux-gnu (for crates with C)" ;;
    armhf) echo "rustup target add armv7-unknown-linux-gnueabihf && apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    esac
}

# Exports the cargo environment to build for TARGET: the linker, static
# linking, and the C cross compiler for build scripts that compile C.
cross_env() {
    local t=$1 up cc="" ar="" linker=""
    up=$(echo "$t" | tr 'a-z-' 'A-Z_')
    case "$t" in
    aarch64-unknown-linux-musl) cc=aarch64-linux-gnu-gcc ar=aarch64-linux-gnu-ar linker=rust-lld ;;
    armv7-unknown-linux-musleabihf) cc=arm-linux-gnueabihf-gcc ar=arm-linux-gnueabihf-ar linker=rust-lld ;;
    armv7-unknown-linux-gnueabihf) cc=arm-linux-gnueabihf-gcc ar=arm-linux-gnueabihf-ar linker=arm-linux-gnueabihf-gcc ;;
    x86_64-unknown-linux-musl) linker=rust-lld ;;
    x86_64-unknown-linux-gnu) ;;
    esac
    if [ -n "$linker" ]; then export "CARGO_TARGET_${up}_LINKER=$linker"; fi
    # glibc targets link statically too: one file that runs on any Pi OS release.
    case "$t" in *-gnu | *-gnueabihf) export "CARGO_TARGET_${up}_RUSTFLAGS=-C target-feature=+crt-static" ;; esac
    if [ -n "$cc" ]; then
        command -v "$cc" >/dev/null || return 1
        export "CC_${t//-/_}=$cc" "AR_${t//-/_}=$ar"
    fi
    if [ "$linker" != "" ] && [ "$linker" != rust-lld ]; then command -v "$linker" >/dev/null || return 1; fi
    return 0
}

# build ARCH PACKAGE BIN: cross-builds, prints the binary's path.
build() {
    local arch=$1 pkg=$2 bin=$3 t
    t=$(target_for "$arch") || { say "no Rust target for $arch installed: $(how_to "$arch")"; return 1; }
    cross_env "$t" || { say "no C cross toolchain for $t: $(how_to "$arch")"; return 1; }
    cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" -p "$pkg" --bin "$bin" --target "$t" >&2
    echo "$TARGET_DIR/$t/release/$bin"
}

if [ "${1:-}" = --build ]; then
    [ $# -eq 4 ] || die "usage: $0 --build ARCH PACKAGE BIN"
    build "$2" "$3" "$4"
    exit
fi

OUT=$ROOT/dist
agents_only=0
arches=()
while [ $# -gt 0 ]; do
    case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
    --agents-only) agents_only=1; shift ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    amd64 | arm64 | armhf) arches+=("$1"); shift ;;
    *) die "unknown argument '$1' (arches: ${ALL_ARCHES[*]})" ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=("${ALL_ARCHES[@]}")
mkdir -p "$OUT"

t0=$(now)
cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" -p pictl --bin pictl
install -m 0755 "$TARGET_DIR/release/pictl" "$OUT/pictl"
say "pictl (host) built in $(elapsed "$t0") s"

# ship ARCH PACKAGE BIN NAME: cross-builds BIN into $OUT/NAME (atomically).
ship() {
    local t1 p
    t1=$(now)
    if p=$(build "$1" "$2" "$3"); then
        install -m 0755 "$p" "$OUT/$4.tmp"
        mv -f "$OUT/$4.tmp" "$OUT/$4"
        say "$4 ($(target_for "$1")) built in $(elapsed "$t1") s"
    else
        say "skipped $4"
        rm -f "$OUT/$4"
        return 1
    fi
}

failed=()
for arch in "${arches[@]}"; do
    ship "$arch" pictl-agent pictl-agent "pictl-agent-$arch" || failed+=("pictl-agent-$arch")
done
if [ "$agents_only" = 0 ]; then
    for arch in "${arches[@]}"; do
        ship "$arch" pictl pictl "pictl-$arch" || failed+=("pictl-$arch")
    done
fi

version=$("$OUT/pictl" --version | awk 'NR == 1 { print $2 }')
rm -f "$OUT"/pictl-*.tar.gz
for arch in "${arches[@]}"; do
    [ -f "$OUT/pictl-$arch" ] || continue
    stage=$(mktemp -d)
    chmod 0755 "$stage"
    install -m 0755 "$OUT/pictl-$arch" "$stage/pictl"
    cp -p "$OUT"/pictl-agent-* "$stage/"
    tar -C "$stage" --owner=0 --group=0 -czf "$OUT/pictl-$version-linux-$arch.tar.gz" .
    rm -rf "$stage"
done

(cd "$OUT" && sha256sum pictl pictl-* >SHA256SUMS.tmp && mv -f SHA256SUMS.tmp SHA256SUMS)
echo "dist: $OUT (in $(elapsed "$t0") s)"
(cd "$OUT" && ls -l pictl pictl-* | awk '{ printf "  %-36s %9d bytes\n", $NF, $5 }')
if [ ${#failed[@]} -gt 0 ]; then
    echo "dist: not built: ${failed[*]}"
    exit 1
fi
