#!/usr/bin/env bash
# Installs the host packages the lab (tests/lab/lab) needs, on Debian/Ubuntu.
# Idempotent and non-interactive; CI calls it on a fresh machine.
# --no-install-recommends matters: systemd-container recommends
# libnss-mymachines, which would edit the host's nsswitch.conf.
set -euo pipefail

PACKAGES=(
    debootstrap       # builds the base image
    systemd-container # systemd-nspawn
    iproute2          # ip: bridge, veth, netns
    openssh-client    # ssh, ssh-keygen
    python3           # the artifact mirror (http.server)
    procps            # ps, used when debugging leaks
    util-linux        # mount, umount, flock, setsid, mountpoint
    ca-certificates
    curl              # the HA test speaks to the simulator's etcd peer port with and without its certificate
    systemd           # systemd-analyze, for the agent unit's verify test
    groff-base        # groff, which checks the man page pictl generates
    openssh-server    # sshd for the transport tests (a private one; the system service is not started)
    qemu-user-static  # arm64 lab nodes: real aarch64 userland under qemu-user (binfmt, flags POCF below)
    binfmt-support    # registers qemu-user-static's interpreters
    gcc-aarch64-linux-gnu   # cross C compiler for the simulator's aws-lc-sys (k3s-arm64)
    libc6-dev-arm64-cross   # its headers (gcc's Recommends, not pulled with --no-install-recommends)
    gcc-arm-linux-gnueabihf # the same for armhf (k3s-armhf)
    libc6-dev-armhf-cross
    prometheus        # promtool, which checks the agent's /metrics exposition (its server is not started)
    victoria-metrics  # a Prometheus-compatible scraper with Kubernetes discovery (Debian's Prometheus has none) for the prometheus e2e; its service is not started
)

# Rust targets for the cross-built agents and the simulator (see dist.sh).
RUST_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)

if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps.sh: all lab host packages present"
else
    echo "install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Install without starting services (openssh-server's own sshd): the tests
    # run their own. Remove only the policy-rc.d this script created.
    made_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        made_policy=yes
    fi
    status=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    [ "$made_policy" = yes ] && rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
    # The tests run their own; the package's service stays off at boot too.
    if [[ " ${missing[*]} " == *" victoria-metrics "* ]]; then
        rm -f /etc/systemd/system/multi-user.target.wants/victoria-metrics.service
    fi
fi

# qemu-aarch64 with flags POCF. binfmt-support registers it with PF; without
# C (credentials from the binary, not the interpreter) setuid binaries such as
# sudo run with the caller's uid ("effective uid is not 0"); O hands the
# interpreter an open fd, so binaries that are not readable still run.
# Re-registered only when the flags differ, so this stays idempotent.
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
register_qemu() {
    local name=$1 magic=$2 mask=$3 interp=/usr/bin/qemu-$1-static
    [ -x "$interp" ] || { echo "install-deps.sh: $interp missing" >&2; exit 1; }
    if [ -e "$BINFMT/qemu-$name" ]; then
        if grep -qx 'flags: POCF' "$BINFMT/qemu-$name" && grep -qx "interpreter $interp" "$BINFMT/qemu-$name"; then
            return 0
        fi
        echo -1 >"$BINFMT/qemu-$name"
    fi
    echo ":qemu-$name:M::$magic:$mask:$interp:POCF" >"$BINFMT/register"
    echo "install-deps.sh: registered qemu-$name (flags POCF)"
}
register_qemu aarch64 \
    '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' \
    '\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed)
    for t in "${RUST_TARGETS[@]}"; do
        grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
else
    echo "install-deps.sh: rustup not found; cross targets not installed (${RUST_TARGETS[*]})" >&2
fi
