#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test tier: lint, strict typing, pure unit tests,
# etcd integration tests and the functional tests on real systemd machines (systemd-nspawn).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One command per line: under set -e a failing `a && b` list would not stop the script.
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest "$@"
