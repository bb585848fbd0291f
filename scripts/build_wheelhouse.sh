#!/usr/bin/env bash
# Build a wheelhouse folder for Kaggle with internet off: the hpo-helpers wheel plus wheels of
# every dependency of the package and its notebook extras except torch (Kaggle ships torch).
# Upload the folder as a Kaggle dataset, attach it, and set project_source to its path
# (/kaggle/input/<dataset>); the set-up cell then installs with --no-index --find-links.
# Usage: bash scripts/build_wheelhouse.sh [--project-only] [OUT_DIR]   (default: wheelhouse/)
#   --project-only  only the package's own wheel (for a runtime that has the dependencies)
# PYTHON selects the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
only=0
if [ "${1:-}" = "--project-only" ]; then only=1; shift; fi
out="${1:-wheelhouse}"
py="${PYTHON:-}"
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
mkdir -p "$out"
"$py" -m pip wheel -q --no-deps . -w "$out"
if [ "$only" = 0 ]; then
  # Wheels for the dependencies; torch is excluded (the runtime's build is kept).
  "$py" -m pip download -q -d "$out" --only-binary=:all: \
    "$(ls "$out"/hpo_helpers-*.whl | head -1)[minilm,widgets,plots,dashboard]" 2>/dev/null \
    || "$py" -m pip download -q -d "$out" ".[minilm,widgets,plots,dashboard]"
  rm -f "$out"/torch-*.whl "$out"/nvidia_*.whl "$out"/triton-*.whl
fi
ls "$out"
