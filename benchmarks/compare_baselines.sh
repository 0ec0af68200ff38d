#!/usr/bin/env bash
# SASRec and GRU4Rec on the real Amazon data, trained on every user until RecBole's early stopping on valid
# NDCG@10 (stopping_step 10, at most 300 epochs), with Pop, CountRank (the counts LLMTRSR's prompt shows, ranked
# without an LLM) and the random row, validated and tested on the same seeded eval_users. Prints the table (also
# written under outputs/ with per-user values and a plot) and the wall time.
#   bash benchmarks/compare_baselines.sh [../shared/data] [dataset] [eval_users] [more --key=value ...]
set -euo pipefail
data_path=${1:-../shared/data}
dataset=${2:-amazon-scientific}
eval_users=${3:-500}
started=$(date +%s)
python run_recbole_trsr.py --model=SASRec,GRU4Rec,Pop,CountRank --dataset="$dataset" --data_path="$data_path" \
  --eval_users="$eval_users" --show_progress=False "${@:4}"
echo "wall time: $(( $(date +%s) - started )) s"
