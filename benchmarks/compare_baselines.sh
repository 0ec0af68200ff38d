#!/usr/bin/env bash
# The README's comparison on the real Amazon Beauty data: SASRec, GRU4Rec and the random row, on identical
# test candidates. Prints the table (also written under outputs/) and the wall time of the whole run.
#   bash benchmarks/compare_baselines.sh [../shared/data] [epochs]
set -euo pipefail
data_path=${1:-../shared/data}
epochs=${2:-5}
started=$(date +%s)
python run_recbole_trsr.py --model=SASRec,GRU4Rec --dataset=amazon --data_path="$data_path" --epochs="$epochs"
echo "wall time: $(( $(date +%s) - started )) s"
