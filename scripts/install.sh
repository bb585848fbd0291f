#!/usr/bin/env bash
# Create .venv (if missing) and install the project: torch's CPU build first, then the rest.
# Usage: bash scripts/install.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q -r requirements.txt
"$venv/bin/python" -m pip install -q -e .
