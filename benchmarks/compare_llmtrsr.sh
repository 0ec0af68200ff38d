#!/usr/bin/env bash
# The README's LLMTRSR comparison on CPU: LLMTRSR with hierarchical, recurrent and no summaries, SASRec,
# GRU4Rec and the random row, on one user subset of amazon and identical test candidates. Prints the table
# (also written under outputs/) and the wall time of the whole run.
# LLMTRSR trains one epoch on each user's 2 most recent training examples (one epoch leaves nothing for
# validation to choose, so eval_step=0 skips it); the baselines keep RecBole's defaults (early stopping on
# valid NDCG@10). Summaries are made on the first run (about 12 min hierarchical and 16 min recurrent for 200
# users on 2 cores) and are reused from the store after that.
#   bash benchmarks/compare_llmtrsr.sh [../shared/data] [users]
set -euo pipefail
data_path=${1:-../shared/data}
users=${2:-150}
cpu_run="epochs=1;eval_step=0"
started=$(date +%s)
python run_recbole_trsr.py \
  --model="LLMTRSR[$cpu_run],LLMTRSR[summary_mode=recurrent;$cpu_run],LLMTRSR[summary_mode=none;$cpu_run],SASRec,GRU4Rec" \
  --dataset=amazon --data_path="$data_path" --max_users="$users" \
  --max_train_prefixes=2 --learning_rate=0.001 --show_progress=False "${@:3}"
echo "wall time: $(( $(date +%s) - started )) s"
