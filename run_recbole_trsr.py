"""Compare RecBole models and recbole-trsr's models on one dataset.

python run_recbole_trsr.py --model=SASRec,GRU4Rec --dataset=amazon --data_path=../shared/data --epochs=5
"""

import sys

if __name__ == "__main__":
    try:
        from recbole_trsr.cli import main
    except KeyboardInterrupt:  # Ctrl-C in the seconds torch and RecBole take to import: nothing has started
        print("run_recbole_trsr.py: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
