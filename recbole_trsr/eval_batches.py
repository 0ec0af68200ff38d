"""Batches of sampled evaluation candidates built in one piece, from the same draws as RecBole's.

RecBole 1.2.1's ``NegSampleEvalDataLoader.collate_fn`` builds a batch user by user: the user's rows, their
negatives, an Interaction repeated, joined and labelled, and finally all users' Interactions concatenated. On
``amazon`` (22,363 users, 20 negatives each) three quarters of a validation pass went to that per-user work, not
to the draws: 5.5 s a pass on an idle 2-core machine, 0.95 s here (benchmarks/RESULTS.md, 2026-11-28). Every
model pays it at each validation and at the test: RecBole's baselines validate after each of their 40-odd
epochs, where a GPU trains an epoch of theirs in seconds.

``collate_users`` calls the sampler exactly as RecBole does, user by user, in the same order and with the same
arguments. Its draws from numpy's global state are therefore the same, and so are the candidates. It then
gathers, repeats, joins and labels all the rows once per batch. The batch holds the same columns and values in
the same rows, and the same ``idx_list``, ``positive_u`` and ``positive_i``. Loaders outside its case keep
RecBole's own: a transform other than the identity, dynamic negatives, or no negative sampling.
"""

from __future__ import annotations

import numpy as np
import torch

_recbole_collate = None  # NegSampleEvalDataLoader.collate_fn as RecBole defines it


def builds_in_one_piece(loader) -> bool:
    from recbole.data.dataloader.abstract_dataloader import NegSampleDataLoader
    from recbole.data.transform import Equal

    args = loader.neg_sample_args
    return (
        args["distribution"] != "none"
        and args["sample_num"] != "none"
        and not args.get("dynamic", False)
        and isinstance(loader.transform, Equal)
        and getattr(loader.sampling_func, "__func__", None) is NegSampleDataLoader._neg_sample_by_point_wise_sampling
    )


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``np.concatenate([np.arange(start, start + length) ...])`` of every pair, without a loop over them."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())


def collate_users(loader, index):
    """``NegSampleEvalDataLoader.collate_fn`` for the users at ``index`` of the loader's user list."""
    if not builds_in_one_piece(loader):
        return _recbole_collate(loader, index)
    from recbole.data.interaction import Interaction

    users = loader.uid_list[np.asarray(index)]
    counts = loader.uid2items_num[users].astype(np.int64)
    first_rows = np.array([loader.uid2index[user].start for user in users], dtype=np.int64)
    dataset = loader._dataset
    rows = dataset[torch.from_numpy(concatenated_ranges(first_rows, counts))]
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    user_ids, item_ids = rows[uid_field].numpy(), rows[iid_field].numpy()
    ends = np.cumsum(counts)
    starts = ends - counts
    times, negatives = loader.times, loader.neg_sample_num
    # RecBole's draws: one sampler call per user, in the batch's order.
    drawn = [
        loader._sampler.sample_by_user_ids(user_ids[start:end], item_ids[start:end], negatives)
        for start, end in zip(starts, ends, strict=True)
    ]
    # Each user's block, as RecBole's point-wise sampling lays it out: the user's rows `times` times over, the
    # first copy keeping the positive items and labelled 1, the others taking the drawn items in order.
    block_sizes = counts * times
    in_block = concatenated_ranges(np.zeros_like(block_sizes), block_sizes)
    user_counts = np.repeat(counts, block_sizes)
    positive = torch.from_numpy(in_block < user_counts)
    batch = Interaction(
        {
            field: column[torch.from_numpy(np.repeat(starts, block_sizes) + in_block % user_counts)]
            for field, column in rows.interaction.items()
        }
    )
    batch[iid_field][~positive] = torch.cat(drawn).to(batch[iid_field].dtype)
    batch = dataset.join(batch)
    batch.update(Interaction({loader.label_field: positive.float()}))
    user_index = torch.arange(len(users))
    idx_list = user_index.repeat_interleave(torch.from_numpy(block_sizes))
    positive_u = user_index.repeat_interleave(torch.from_numpy(counts))
    return batch, idx_list, positive_u, torch.from_numpy(item_ids)


def install() -> None:
    """Puts ``collate_users`` in the place of RecBole's; safe to call more than once."""
    global _recbole_collate
    from recbole.data.dataloader.general_dataloader import NegSampleEvalDataLoader

    if _recbole_collate is None:
        _recbole_collate = NegSampleEvalDataLoader.collate_fn
        NegSampleEvalDataLoader.collate_fn = collate_users
