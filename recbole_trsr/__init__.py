"""recbole-trsr: LLM-TRSR (WWW 2024) as a RecBole plugin, compared with RecBole's models on one protocol."""

from recbole_trsr import compat

compat.apply()  # before anything below imports RecBole

from recbole_trsr import eval_batches  # noqa: E402

eval_batches.install()  # sampled candidates built per batch, from RecBole's own draws

from recbole_trsr.model import (  # noqa: E402
    LLMTRSR,
    CountRank,
    CountRankTrainer,
    LLMTRSRTrainer,
    RandomRank,
    RandomRankTrainer,
)
from recbole_trsr.registry import get_model_class, register_model  # noqa: E402
from recbole_trsr.summary.dataset import LLMTRSRDataset  # noqa: E402

register_model(RandomRank, trainer_class=RandomRankTrainer)
register_model(CountRank, trainer_class=CountRankTrainer)
register_model(LLMTRSR, dataset_class=LLMTRSRDataset, trainer_class=LLMTRSRTrainer)

__version__ = "0.1.0"
__all__ = ["get_model_class", "register_model", "CountRank", "LLMTRSR", "RandomRank", "__version__"]
