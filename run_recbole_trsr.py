"""Compare RecBole models and recbole-trsr's models on one dataset.

python run_recbole_trsr.py --model=SASRec,GRU4Rec --dataset=amazon --data_path=../shared/data --epochs=5
"""

import sys

from recbole_trsr.cli import main

if __name__ == "__main__":
    sys.exit(main())
