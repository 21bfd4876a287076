#!/usr/bin/env bash
# Lays out a K3s release mirror for the lab from the simulator:
#   <dir>/<version>/{k3s,k3s-arm64,k3s-armhf,sha256sum-amd64.txt,sha256sum-arm64.txt,sha256sum-arm.txt,
#                    k3s-airgap-images-{amd64,arm64,arm}.tar.zst}
# for two versions whose binaries differ and report their own version. The
# simulator is built once per architecture; each file is a stripped copy with a
# trailer naming its version and architecture (the binary reads the trailer from
# /proc/self/exe). k3s-arm64 is a real aarch64 build (cross-built by
# ../../dist.sh --build; it runs in the lab's arm64 nodes under qemu-user);
# k3s-armhf is a real armv7 build when that toolchain is installed. Without a
# cross toolchain an arch gets the host build stamped for it, which refuses to
# run like a foreign binary would (set PICTL_MIRROR_REAL_ARCHES="arm64 ..." to
# make a missing cross build an error instead). Idempotent: files are only
# rewritten when their content changes. PICTL_MIRROR_PAD_TO=BYTES pads each
# binary to that size (K3s's real size is about 70 MB, 73400320) with
# deterministic pseudo-random bytes before its trailer, for benchmarks of the
# artifact path; the simulator runs the same. PICTL_MIRROR_CROSS="arm64 armhf"
# (the default) names the arches cross-built; the amd64-only demo sets it empty
# and gets the stamped host build for the others at once.
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
strip -o "$work/k3s.amd64" "$bin"

# The real cross builds; an arch without one gets the stamped host build.
for arch in arm64 armhf; do
    t0=$(date +%s)
    if [[ " ${PICTL_MIRROR_CROSS-arm64 armhf} " != *" $arch "* ]]; then
        echo "mirror.sh: $arch not cross-built (PICTL_MIRROR_CROSS); serving the host build stamped $arch" >&2
        cp "$work/k3s.amd64" "$work/k3s.$arch"
    elif cross=$("$root/dist.sh" --build "$arch" k3s-sim k3s); then
        cp "$cross" "$work/k3s.$arch"
        echo "mirror.sh: k3s-sim for $arch: $cross ($(($(date +%s) - t0)) s)" >&2
    elif [[ " ${PICTL_MIRROR_REAL_ARCHES:-} " == *" $arch "* ]]; then
        echo "mirror.sh: no $arch build of the simulator (PICTL_MIRROR_REAL_ARCHES requires one)" >&2
        exit 1
    else
        echo "mirror.sh: warning: no $arch build of the simulator; serving the host build stamped $arch" >&2
        cp "$work/k3s.amd64" "$work/k3s.$arch"
    fi
done

# pad_to FILE: appends pseudo-random bytes (AES-CTR of zeros: no link
# could compress them, and the same bytes every time) up to PICTL_MIRROR_PAD_TO.
pad_to() {
    local want=${PICTL_MIRROR_PAD_TO:-0} have
    have=$(stat -c %s "$1")
    [ "$want" -gt "$have" ] || return 0
    { openssl enc -aes-128-ctr -K 00 -iv 00 -nosalt </dev/zero 2>/dev/null || true; } |
        head -c "$((want - have))" >>"$1"
}

# airgap_archive VERSION ARCH OUT: K3s's k3s-airgap-images-<arch>.tar.zst
# stand-in, a `docker save` archive (manifest.json with RepoTags, a config,
# a layer per image) of a few of the images a real one carries, zstd
# compressed; different per version and arch, and the same bytes every run.
# PICTL_MIRROR_AIRGAP_PAD_TO=BYTES adds a layer of incompressible bytes so
# the archive is about that size (a real amd64 one is on the order of
# 150-170 MB; measure the release you compare with).
airgap_archive() {
    local v=$1 arch=$2 out=$3 t i img
    t=$(mktemp -d "$work/airgap.XXXXXX")
    local imgs=(rancher/mirrored-pause:3.6 rancher/mirrored-coredns-coredns:1.12.1
        rancher/mirrored-metrics-server:v0.7.2 rancher/local-path-provisioner:v0.0.31)
    printf '[' >"$t/manifest.json"
    for i in "${!imgs[@]}"; do
        img=${imgs[$i]}
        printf '{"architecture":"%s","k3s":"%s","image":"%s"}' "$arch" "$v" "$img" >"$t/cfg$i.json"
        mkdir -p "$t/l$i"
        printf 'layer of %s for %s %s\n' "$img" "$arch" "$v" >"$t/l$i/layer.tar"
        [ "$i" = 0 ] || printf ',' >>"$t/manifest.json"
        printf '{"Config":"cfg%s.json","RepoTags":["%s"],"Layers":["l%s/layer.tar"]}' "$i" "$img" "$i" >>"$t/manifest.json"
    done
    printf ']' >>"$t/manifest.json"
    local want=${PICTL_MIRROR_AIRGAP_PAD_TO:-0}
    if [ "$want" -gt 0 ]; then
        mkdir -p "$t/pad"
        { openssl enc -aes-128-ctr -K 01 -iv 00 -nosalt </dev/zero 2>/dev/null || true; } |
            head -c "$want" >"$t/pad/layer.tar"
    fi
    tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name \
        -C "$t" -cf - . | zstd -q -3 -c >"$out"
    rm -rf "$t"
}

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
    # sums: the checksum file's name (K3s calls armhf "arm" there).
    for triple in amd64:amd64:k3s arm64:arm64:k3s-arm64 armhf:arm:k3s-armhf; do
        arch=${triple%%:*}
        sums=${triple#*:}
        sums=${sums%%:*}
        file=${triple##*:}
        cp "$work/k3s.$arch" "$work/$file"
        pad_to "$work/$file"
        printf '\n#K3S-SIM-ARCH=%s\n#K3S-SIM-VERSION=%s\n' "$sums" "$v" >>"$work/$file"
        install_if_changed "$work/$file" "$d/$file" 0755
        images=k3s-airgap-images-$sums.tar.zst
        airgap_archive "$v" "$sums" "$work/$images"
        install_if_changed "$work/$images" "$d/$images" 0644
        (cd "$d" && sha256sum "$file" "$images") >"$work/sha256sum-$sums.txt"
        install_if_changed "$work/sha256sum-$sums.txt" "$d/sha256sum-$sums.txt" 0644
    done
done
echo "mirror.sh: ${versions[*]} in $out"
