#!/usr/bin/env bash
# Installs the example relying parties' pinned dependencies: a Python virtualenv in
# examples/rp-python/.venv (requirements.txt) and examples/rp-node/node_modules (npm ci from
# package-lock.json). The test suite (`cargo test --test e2e integration_kit::`) runs both examples
# against the real gateway and fails, saying to run this script, when they are missing.
set -euo pipefail
cd "$(dirname "$0")"

command -v python3 >/dev/null || { echo "python3 (3.9 or later) is needed for examples/rp-python" >&2; exit 1; }
command -v npm >/dev/null || { echo "node (20 or later) and npm are needed for examples/rp-node" >&2; exit 1; }

if [ ! -x rp-python/.venv/bin/python ]; then
  python3 -m venv rp-python/.venv
fi
rp-python/.venv/bin/pip install --quiet --disable-pip-version-check -r rp-python/requirements.txt
(cd rp-node && npm ci --no-audit --no-fund --loglevel=error)
echo "example RP dependencies installed"
