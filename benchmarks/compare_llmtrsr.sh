#!/usr/bin/env bash
# LLMTRSR rows added, one model at a time, to a comparison table of baselines (benchmarks/compare_baselines.sh).
# Every row is tested on the table's users and candidates (--add_to refuses anything else); each finished row is
# written at once, so an interrupted queue loses only the model it was running. Summaries go to one store under
# <checkpoint_dir> and are reused by every later run.
#   bash benchmarks/compare_llmtrsr.sh <baseline table .csv> <data_path> <dataset> <eval_users> <model> [<model> ...] -- [--key=value ...]
# e.g.
#   bash benchmarks/compare_llmtrsr.sh outputs/comparison-amazon-scientific-<time>.csv ../shared/data \
#     amazon-scientific 500 "LLMTRSR[summary_mode=none]" "LLMTRSR" -- --train_users=1000 --max_train_prefixes=1
set -euo pipefail
table=$1 data_path=$2 dataset=$3 eval_users=$4
shift 4
models=()
while [[ $# -gt 0 && $1 != "--" ]]; do models+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
output_dir=$(dirname "$table")
for model in "${models[@]}"; do
  started=$(date +%s)
  python run_recbole_trsr.py --model="$model" --dataset="$dataset" --data_path="$data_path" --eval_users="$eval_users" \
    --add_to="$table" --output_dir="$output_dir" --show_progress=False "$@"
  # The newest table holds every row so far: the next model joins it.
  table=$(ls -t "$output_dir"/comparison-"$dataset"-*.csv | grep -v -- '-users\.csv$' | head -1)
  echo "$model: $(( $(date +%s) - started )) s; table: $table"
done
