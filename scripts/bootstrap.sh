#!/usr/bin/env bash
# Creates .venv with the pinned stack (constraints.txt) and this package installed editable.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }
# The stock pip 23 backtracks badly on this stack; a current pip resolves it directly.
pip install -q --disable-pip-version-check -U "pip==26.3"
pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
pip install -q -c constraints.txt -e ".[test]" -e plugins/jepa-example-plugin
