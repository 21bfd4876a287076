#!/usr/bin/env bash
# The quick start's one install: `pictl` and the health agent for every arch a
# Pi fleet runs (pictl-agent-amd64, -arm64, -armhf: static, so they start on
# any Pi OS), laid out as a release, into PREFIX/bin. pictl finds each
# `pictl-agent-<arch>` beside itself, so every node of every supported arch
# gets its agent with no `[agent] binaries` entry.
#
#   ./install.sh            PREFIX: $PREFIX, else /usr/local as root, else ~/.local
#
# What it needs and sets up itself: the Rust targets (rustup target add), and
# on Debian/Ubuntu the cross C compilers the agent's TLS crate (ring) builds
# with (apt-get; through sudo when not root). Elsewhere it names them and
# stops. The build runs in the cargo target dir ($CARGO_TARGET_DIR, else
# ./target) and takes a few minutes the first time.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
# Debian packages: the C cross compilers and their C library headers.
CROSS_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)

say() { echo "install.sh: $*" >&2; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

if [ -n "${PREFIX:-}" ]; then
    prefix=$PREFIX
elif [ "$(id -u)" = 0 ]; then
    prefix=/usr/local
else
    prefix=$HOME/.local
fi

command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs first"
if command -v rustup >/dev/null; then
    missing=$(comm -23 <(printf '%s\n' "${TARGETS[@]}" | sort) <(rustup target list --installed | sort))
    if [ -n "$missing" ]; then
        say "adding Rust targets: $(echo $missing)"
        # shellcheck disable=SC2086
        rustup target add $missing >&2
    fi
else
    say "rustup not found: the arm64/armhf agents need the Rust targets ${TARGETS[*]}"
fi

need_packages() {
    local p missing=()
    for p in "${CROSS_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    echo "${missing[@]}"
}
if command -v dpkg-query >/dev/null; then
    missing=$(need_packages)
    if [ -n "$missing" ]; then
        say "installing the cross C compilers: $missing"
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        # shellcheck disable=SC2086
        { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq --no-install-recommends $missing >&2; } ||
            die "could not install $missing (as root: apt-get install $missing)"
    fi
elif ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v arm-linux-gnueabihf-gcc >/dev/null; then
    die "the agents for arm64 and armhf need the C cross compilers aarch64-linux-gnu-gcc and arm-linux-gnueabihf-gcc (your distribution's cross gcc packages)"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$ROOT/dist.sh" --agents-only --out "$stage" >&2 || die "the build failed (see above)"
mkdir -p "$prefix/bin"
for f in pictl pictl-agent-amd64 pictl-agent-arm64 pictl-agent-armhf; do
    install -m 0755 "$stage/$f" "$prefix/bin/$f.tmp"
    mv -f "$prefix/bin/$f.tmp" "$prefix/bin/$f"
done
# An older `cargo install --path agent` leaves a host-only agent beside pictl;
# pictl-agent-<arch> is preferred over it either way.
echo "installed into $prefix/bin: pictl, pictl-agent-amd64, pictl-agent-arm64, pictl-agent-armhf"
"$prefix/bin/pictl" --version
case ":$PATH:" in
*":$prefix/bin:"*) ;;
*) echo "add $prefix/bin to your PATH (e.g. export PATH=\"$prefix/bin:\$PATH\")" ;;
esac
