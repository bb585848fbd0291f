#!/usr/bin/env bash
# Create .venv (if missing) and install the project: torch's CPU build first, then the rest.
# Usage: bash scripts/install.sh [--with-browser] [VENV_DIR]
#   --with-browser  also install what the test suite's servers need: Debian's chromium (apt,
#                   needs root) for the browser test, and Azurite (npm, Microsoft's Azure
#                   Storage emulator) under $VENV/azurite for the az:// durable_url tests
set -euo pipefail
cd "$(dirname "$0")/.."
browser=0
if [ "${1:-}" = "--with-browser" ]; then browser=1; shift; fi
venv="${1:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q -r requirements.txt
"$venv/bin/python" -m pip install -q -e .
if [ "$browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    echo "note: /usr/bin/chromium is missing and this is not root; the browser test will skip" >&2
  fi
fi
if [ "$browser" = 1 ] && [ ! -x "$venv/azurite/node_modules/.bin/azurite-blob" ]; then
  if command -v npm >/dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$venv/azurite" azurite@3.37.0
  else
    echo "note: npm is missing; the Azurite (az://) tests will skip" >&2
  fi
fi
