#!/usr/bin/env bash
# The GPU checks of issues 13 and 14 as one device call, each step time-boxed so that the call ends inside its
# 10 minutes and brings back what it measured. GPUs are lent rarely and for 15 minutes: spend them here first.
#
# From the project root, here:   ../shared/tools/gpu-payload
# then the device tool's three setup calls from that script's header, back to back, and at once a fourth:
#   run  timeout_s 600  command: bash benchmarks/gpu_session.sh
# Everything comes back under $OUT (at most 8 files): session.log (every step's output, in order), the JSON of
# each benchmark and the suite's JUnit XML. Steps, in the order of what the issues need most:
#   1. scoring in bfloat16 and in float16: candidates/s, the matmul rate, max |shared prefix - full prompt|
#   2. summaries: generated tokens/s at batch sizes 16, 64 and 256 on real block prompts
#   3. training on 2 processes on the one GPU against 1 (issue 14's GPU figure): rows/s, SASRec and LLMTRSR
#   4. the test suite on CUDA, each test's outcome in the log as it runs (and the JUnit XML if it finishes)
# A step that runs out of its time is cut and the next one starts; its log says how far it got.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-session}
mkdir -p "$out"
log="$out/session.log"
export PYTHONPATH="/root/gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

step() {
  local name=$1 seconds=$2 started
  shift 2
  started=$(date +%s)
  echo "=== $name (at most $seconds s): $*" >>"$log"
  timeout --kill-after=10 "$seconds" "$@" >>"$log" 2>&1
  echo "=== $name: exit $? after $(($(date +%s) - started)) s" | tee -a "$log"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'peft', peft.__version__)"
  python3 -c "import pytest; print('pytest', pytest.__version__)" || echo "no pytest on this machine: step 4 cannot run"
} >>"$log" 2>&1

step scoring-bf16 75 python3 benchmarks/scoring_speed.py --device cuda --dtype bf16 --users 64 --users-per-batch 16 \
  --output "$out/scoring-bf16.json"
step scoring-fp16 75 python3 benchmarks/scoring_speed.py --device cuda --dtype float16 --users 64 --users-per-batch 16 \
  --output "$out/scoring-fp16.json"
step generation 90 python3 benchmarks/generation_speed.py --batch-sizes 16 64 256 --prompts 256 \
  --output "$out/generation.json"
step ddp-training 120 python3 benchmarks/ddp_training_speed.py --nproc 2 --threads 8 --models SASRec,LLMTRSR \
  --checkpoint_dir /tmp/gpu-session-saved
step suite 200 python3 -m pytest -v --tb=line -p no:cacheprovider --junitxml="$out/suite.xml" tests
echo "=== done $(date -u)" >>"$log"
