"""The plugin's RecBole models, one per module, and their trainers."""

from recbole_trsr.model.count_rank import CountRank, CountRankTrainer
from recbole_trsr.model.llmtrsr import LLMTRSR
from recbole_trsr.model.llmtrsr_trainer import LLMTRSRTrainer
from recbole_trsr.model.random_rank import RandomRank, RandomRankTrainer

__all__ = ["CountRank", "CountRankTrainer", "LLMTRSR", "LLMTRSRTrainer", "RandomRank", "RandomRankTrainer"]
