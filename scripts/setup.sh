#!/usr/bin/env bash
# Install what fleet needs on a Debian 12 machine (root) and the project into ./.venv.
# Idempotent: a second run only checks. Used by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: must run as root (apt-get, systemd-nspawn)" >&2; exit 1; }

# chromium and chromium-driver: the dashboard's browser test (tests/functional/test_dashboard.py).
pkgs=(etcd-server etcd-client systemd-container openssh-server dbus iproute2 iptables python3-venv
      chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    # Debian's etcd-server (and openssh-server) would start system services on install; we run our
    # own etcd on private ports and our own sshd inside the machines, so forbid service starts while
    # installing, unless the machine already has a policy.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    [ "$made_policy" = 1 ] && rm -f "$policy"
    # On a host booted with systemd the packages may still have enabled their units: keep them off.
    if [ -d /run/systemd/system ]; then systemctl disable --now etcd.service 2>/dev/null || true; fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when pyproject.toml or constraints.txt changed since the last install.
# The test extra pulls in the daemon extra (fleetd, fleet-cluster); constraints.txt pins
# every version so CI installs exactly what was tested.
stamp=.venv/.fleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -c constraints.txt -e '.[test]'
    touch "$stamp"
fi
