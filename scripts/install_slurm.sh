#!/usr/bin/env bash
# Install a single-node Slurm (with accounting) from the Debian archive, for
# tests/slurm_cluster.py. Idempotent; starts no service (the tests run the
# daemons themselves, under a temporary directory).
set -euo pipefail

PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

if [ "$(id -u)" -ne 0 ]; then
    echo "install_slurm.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm packages already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/install_slurm.log 2>&1
}
# Never let the packages' maintainer scripts start services, even where the
# image has no policy-rc.d of its own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { [ "$created_policy" -eq 0 ] || rm -f "$policy"; }
trap cleanup EXIT

if ! install; then
    apt-get update -q >/tmp/install_slurm.log 2>&1 || { tail -n 20 /tmp/install_slurm.log >&2; exit 1; }
    install || { tail -n 20 /tmp/install_slurm.log >&2; exit 1; }
fi
echo "installed: ${missing[*]}"
