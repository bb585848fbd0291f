#!/usr/bin/env bash
# Build a wheelhouse folder for Kaggle with internet off: the hpo-helpers wheel plus wheels of
# every dependency of the package and its notebook extras except torch (Kaggle ships torch).
# Wheels only: a dependency published as an sdist (seqeval) is built into a wheel here, because
# building it offline would need build tools (setuptools, wheel) that the wheelhouse lacks.
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
  # Resolve the package with its notebook extras (metadata only), then fetch every wheel except
  # torch and its CUDA companions: the runtime's own torch build is kept (issue 14).
  whl="$(ls "$out"/hpo_helpers-*.whl | head -1)"
  "$py" -m pip install -q --dry-run --ignore-installed --report "$out/.report.json" \
    "hpo-helpers[minilm,widgets,plots,dashboard] @ file://$(cd "$(dirname "$whl")" && pwd)/$(basename "$whl")"
  "$py" - "$out" <<'PY'
import json, subprocess, sys
out = sys.argv[1]
items = json.load(open(f"{out}/.report.json"))["install"]
skip = ("torch", "nvidia-", "triton", "cuda-", "hpo-helpers")
reqs = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items
        if not i["metadata"]["name"].lower().startswith(skip)]
# `pip wheel`, not `pip download`: an sdist would be saved as it is (issue 22 item 6)
subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, *reqs],
               check=True)
PY
  rm -f "$out/.report.json"
  if ls "$out" | grep -v '\.whl$' | grep -q .; then
    echo "error: $out holds files that are not wheels: $(ls "$out" | grep -v '\.whl$')" >&2
    exit 1
  fi
fi
ls "$out"
