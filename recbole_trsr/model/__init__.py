"""The plugin's RecBole models, one per module."""

from recbole_trsr.model.llmtrsr import LLMTRSR
from recbole_trsr.model.random_rank import RandomRank, RandomRankTrainer

__all__ = ["LLMTRSR", "RandomRank", "RandomRankTrainer"]
