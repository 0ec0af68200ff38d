"""The candidates a test evaluation scored, per user, so that models can be shown to share them."""

from __future__ import annotations

import contextlib
import hashlib
import json

import torch


class CandidateLog:
    """Records, for each user of one evaluation, the items that received a finite score.

    It taps ``trainer.eval_collector.eval_batch_collect``, which every RecBole trainer feeds with the score
    matrix of a batch (one row per user, -inf outside the user's candidates). Users and items are kept as
    tokens (their ids in the atomic files), which do not depend on how a model's dataset remapped them.
    Under full ranking every item is a candidate, so nothing is recorded.
    """

    def __init__(self, dataset, sampled: bool):
        self.dataset = dataset
        self.sampled = sampled
        self.candidates: dict[str, tuple[str, ...]] = {}

    def observe(self, scores: torch.Tensor, interaction) -> None:
        if not self.sampled:
            return
        users = torch.unique_consecutive(interaction[self.dataset.uid_field].cpu())
        finite = torch.isfinite(scores.cpu())
        if len(users) != finite.shape[0]:
            raise RuntimeError(
                f"a batch has {finite.shape[0]} score rows for {len(users)} users; "
                "each user's candidates must be one contiguous block"
            )
        user_tokens = self.dataset.id2token(self.dataset.uid_field, users.numpy())
        for user, row in zip(user_tokens, finite, strict=True):
            items = row.nonzero().flatten().numpy()
            tokens = self.dataset.id2token(self.dataset.iid_field, items)
            self.candidates[str(user)] = tuple(sorted(str(token) for token in tokens))

    @contextlib.contextmanager
    def recording(self, trainer):
        """Within the block, every batch that ``trainer`` evaluates is recorded."""
        collector = trainer.eval_collector
        collect = collector.eval_batch_collect

        def recording_collect(scores, interaction, positive_u, positive_i):
            self.observe(scores, interaction)
            return collect(scores, interaction, positive_u, positive_i)

        collector.eval_batch_collect = recording_collect
        try:
            yield self
        finally:
            collector.eval_batch_collect = collect

    def detached(self) -> CandidateLog:
        """The same record without its dataset, to send to another process."""
        log = CandidateLog(None, self.sampled)
        log.candidates = self.candidates
        return log

    def digest(self) -> str:
        """A short fingerprint of all recorded candidates; 'full' under full ranking."""
        if not self.sampled:
            return "full"
        payload = json.dumps(sorted(self.candidates.items()), separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:12]
