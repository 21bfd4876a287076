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
    systemd           # systemd-analyze, for the agent unit's verify test
    openssh-server    # sshd for the transport tests (a private one; the system service is not started)
)

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
    exit 0
fi

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
exit "$status"
