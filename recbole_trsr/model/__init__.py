"""The plugin's RecBole models, one per module, and their trainers."""

from recbole_trsr.model.llmtrsr import LLMTRSR
from recbole_trsr.model.llmtrsr_trainer import LLMTRSRTrainer
from recbole_trsr.model.random_rank import RandomRank, RandomRankTrainer

__all__ = ["LLMTRSR", "LLMTRSRTrainer", "RandomRank", "RandomRankTrainer"]
