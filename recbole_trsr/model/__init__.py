"""The plugin's RecBole models, one per module."""

from recbole_trsr.model.random_rank import RandomRank, RandomRankTrainer

__all__ = ["RandomRank", "RandomRankTrainer"]
