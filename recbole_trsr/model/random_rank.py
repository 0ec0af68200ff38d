"""RandomRank: uniformly random scores, the chance level of every comparison table."""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.trainer import Trainer
from recbole.utils import InputType


class RandomRank(SequentialRecommender):
    """Scores every candidate uniformly at random, from its own generator seeded with ``seed``.

    It runs through the same dataset, split and test candidates as the models it is compared with,
    so its row in the table is the chance level of exactly those candidates.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.generator = torch.Generator().manual_seed(config["seed"])
        # RecBole's Trainer builds an optimizer at construction, which refuses a model with no parameters.
        self.placeholder = torch.nn.Parameter(torch.zeros(1))

    def calculate_loss(self, interaction):
        return self.placeholder.sum()

    def predict(self, interaction):
        return torch.rand(len(interaction), generator=self.generator).to(self.device)

    def full_sort_predict(self, interaction):
        return torch.rand(len(interaction), self.n_items, generator=self.generator).to(self.device)


class UntrainedTrainer(Trainer):
    """For models with nothing to learn: ``fit`` trains no epoch and ``evaluate`` never looks for a checkpoint."""

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        return self.best_valid_score, self.best_valid_result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


class RandomRankTrainer(UntrainedTrainer):
    splits_evaluation = False  # on several ranks each scores every batch: the scores follow one generator
