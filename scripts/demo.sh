#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), boot a local cluster of 3 real systemd machines
# (systemd-nspawn) with etcd and fleetd, start the example units and show where they run.
# The cluster stays up afterwards; `.venv/bin/fleet-cluster down` removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/fleet-cluster down >/dev/null 2>&1 || true
.venv/bin/fleet-cluster up --machines 3 --metadata role=web --metadata role=web --metadata role=db
eval "$(.venv/bin/fleet-cluster env)"
fleetctl=.venv/bin/fleetctl
$fleetctl list-machines
$fleetctl start units/examples/hello.service units/examples/hello@1.service \
    units/examples/hello@2.service units/examples/global.service \
    units/examples/ping.service units/examples/pong.service
$fleetctl list-unit-files
$fleetctl list-units
cat <<TXT

The cluster is up. To use it from this shell:
  eval "\$(.venv/bin/fleet-cluster env)"; .venv/bin/fleetctl list-units
Remove it with: .venv/bin/fleet-cluster down
TXT
