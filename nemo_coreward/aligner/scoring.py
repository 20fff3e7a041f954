"""Scoring a step's rollouts under Megatron parallelism: who asks, who waits, who gets what.

After NeMo-Aligner gathers the rollout batch, every data-parallel (DP) rank holds ALL
rollouts of the step (``ReinforceRolloutBatch.chunk`` does not split), so each rank could
score everything alone. Instead the pairs are split across DP ranks, whole pairs only, so
every side of a pair (and the teacher's rollouts on it) is always in the same request and
twins are scored together; within each model-parallel (MP: tensor x pipeline) group only
the source rank sends that request, as NeMo-Aligner's reward clients do. The per-shard
rewards are then all-gathered over DP among the sources and broadcast from each source to
its MP group, so every rank ends with every reward. This spreads the grading (CPU-heavy in
``math_verify`` mode) over the DP ranks and keeps requests small.

The scorer is anything with ``score(rollouts, config, teacher=None) -> ScoredBatch``:
``nemo_coreward.server.LocalScorer`` in process, or ``RewardClient`` for the reward server
(``make_scorer``). The collectives are plain ``torch.distributed`` object collectives on
the groups of ``ParallelLayout``, so the same code runs on NCCL in the container and on
gloo in the CPU tests.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nemo_coreward.reward import RewardConfig, Rollout, ScoredBatch

__all__ = ["SHARD_MEAN_METRICS", "ParallelLayout", "RewardRouter", "merge_shard_metrics",
           "response_decoder", "rollout_records", "shard_pairs"]

# Metrics that count things add up across shards; every other metric is a mean.
SUMMED_METRICS = frozenset({"n_rollouts", "n_groups", "grader_timeouts", "text_repairs"})
# Metrics over the pairs of a batch together, not per pair: merged as the mean of the shards'
# values, which is not the whole batch's value (that needs every shard's answers at once).
SHARD_MEAN_METRICS = frozenset({"shared_answer_rate"})


def shard_pairs(pair_ids: Sequence[int], num_shards: int) -> list[list[int]]:
    """Split the distinct pair ids, sorted, into ``num_shards`` contiguous near-equal runs.

    Deterministic and identical on every rank (it depends only on the ids), so no rank
    needs to be told which pairs another one scores. A shard may be empty when there are
    fewer pairs than shards.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    unique = sorted(set(int(p) for p in pair_ids))
    base, extra = divmod(len(unique), num_shards)
    shards, start = [], 0
    for k in range(num_shards):
        size = base + (1 if k < extra else 0)
        shards.append(unique[start:start + size])
        start += size
    return shards


def merge_shard_metrics(shards: Sequence[tuple[Mapping[str, float], int]]) -> dict[str, float]:
    """Combine per-shard collapse metrics into the metrics of the whole batch.

    Counts (``SUMMED_METRICS``) are summed; every other metric is a mean over rollouts,
    groups or pairs, merged as the mean weighted by the shard's rollout count. Every pair
    has the same number of sides and rollouts per side, so rollouts, groups and pairs are
    in the same proportion in every shard and the weighted mean equals the metric of the
    unsharded batch exactly (up to float rounding); the accuracy metrics are exact too when
    every pair (or none) has a known answer. ``reward_std`` is pooled from the
    shards' means and variances. NaN entries (a metric undefined on a shard) are skipped.
    ``SHARD_MEAN_METRICS`` compare the pairs of a shard with each other: the merge is the
    same weighted mean of the shards' values, which is not the unsharded batch's value
    (``shared_answer_rate``: the questions of each shard answered alike; a policy that gives
    one answer to everything still shows 1.0 on every shard).
    """
    shards = [(m, n) for m, n in shards if n > 0]
    keys = sorted({k for m, _ in shards for k in m})
    out: dict[str, float] = {}
    for key in keys:
        present = [(float(m[key]), n) for m, n in shards if key in m and not math.isnan(m[key])]
        if key in SUMMED_METRICS:
            out[key] = float(sum(v for v, _ in present))
        elif not present:
            out[key] = float("nan")
        elif key == "reward_std":
            continue
        else:
            weight = sum(n for _, n in present)
            out[key] = sum(v * n for v, n in present) / weight
    if any("reward_std" in m for m, _ in shards) and "reward_mean" in out:
        total = sum(n for _, n in shards)
        second = sum(n * (m.get("reward_std", 0.0) ** 2 + m["reward_mean"] ** 2)
                     for m, n in shards if "reward_mean" in m)
        out["reward_std"] = math.sqrt(max(second / total - out["reward_mean"] ** 2, 0.0))
    return out


def rollout_records(rows: Sequence[int], pair_ids: Tensor, sides: Tensor,
                    texts: Sequence[str], ground_truth: Callable[[int], str | None] | None
                    ) -> list[Rollout]:
    """``Rollout`` records for ``rows`` of a rollout batch (texts aligned with rows)."""
    out = []
    for row, text in zip(rows, texts, strict=True):
        pair = int(pair_ids[row])
        out.append(Rollout(pair_id=pair, side=int(sides[row]), response=text,
                           ground_truth=ground_truth(pair) if ground_truth else None))
    return out


@dataclass(frozen=True)
class ParallelLayout:
    """This rank's place: its DP group (only meaningful on MP sources), its MP group and
    whether it is the MP source. ``from_megatron()`` reads Megatron-core's parallel state."""

    dp_rank: int
    dp_size: int
    dp_group: Any
    mp_group: Any
    mp_src: int  # global rank of this MP group's source
    is_mp_src: bool

    @classmethod
    def from_megatron(cls) -> ParallelLayout:
        from megatron.core import parallel_state as ps

        mp_group = ps.get_model_parallel_group()
        src = torch.distributed.get_global_rank(mp_group, 0)
        return cls(dp_rank=ps.get_data_parallel_rank(), dp_size=ps.get_data_parallel_world_size(),
                   dp_group=ps.get_data_parallel_group(), mp_group=mp_group, mp_src=src,
                   is_mp_src=torch.distributed.get_rank() == src)

    @classmethod
    def single(cls) -> ParallelLayout:
        """One process, no torch.distributed: everything local."""
        return cls(0, 1, None, None, 0, True)


Decoder = Callable[[Sequence[int]], list[str]]


class RewardRouter:
    """Scores a gathered rollout batch once per step; every rank gets every reward.

    ``score(pair_ids, sides, decode, ...)``: ``pair_ids``/``sides`` (N,) for the policy
    rollouts, ``decode(rows) -> texts`` turns rows into response texts (only called on MP
    sources, for their shard), the teacher's counterparts likewise. Returns rewards (N,)
    float32 in row order and the merged collapse metrics, identical on all ranks.
    """

    def __init__(self, scorer: Any, layout: ParallelLayout) -> None:
        self.scorer = scorer
        self.layout = layout

    def score(self, config: RewardConfig, pair_ids: Tensor, sides: Tensor, decode: Decoder,
              ground_truth: Callable[[int], str | None] | None = None,
              teacher: tuple[Tensor, Tensor, Decoder] | None = None
              ) -> tuple[Tensor, dict[str, float]]:
        lay = self.layout
        n = pair_ids.numel()
        result: tuple[list[tuple[list[int], list[float]]], dict[str, float]] | None = None
        if lay.is_mp_src:
            mine = shard_pairs(pair_ids.tolist(), lay.dp_size)[lay.dp_rank]
            rows, rewards, metrics = self._score_shard(config, set(mine), pair_ids, sides, decode,
                                                       ground_truth, teacher)
            shard = (rows, rewards, metrics)
            shards = [shard] if lay.dp_size == 1 else _all_gather(shard, lay.dp_size, lay.dp_group)
            merged = merge_shard_metrics([(m, len(r)) for r, _, m in shards])
            result = ([(r, w) for r, w, _ in shards], merged)
        if lay.mp_group is not None and torch.distributed.get_world_size(lay.mp_group) > 1:
            box = [result]
            torch.distributed.broadcast_object_list(box, src=lay.mp_src, group=lay.mp_group)
            result = box[0]
        assert result is not None
        per_shard, metrics = result
        out = torch.full((n,), float("nan"), dtype=torch.float32)
        for rows, rewards in per_shard:
            out[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(rewards,
                                                                           dtype=torch.float32)
        if bool(torch.isnan(out).any()):
            missing = torch.nonzero(torch.isnan(out)).flatten()[:5].tolist()
            raise RuntimeError(f"no reward came back for rollout rows {missing}")
        return out, metrics

    def _score_shard(self, config, mine, pair_ids, sides, decode, ground_truth, teacher):
        rows = [i for i, p in enumerate(pair_ids.tolist()) if p in mine]
        if not rows:
            return [], [], {}
        rollouts = rollout_records(rows, pair_ids, sides, decode(rows), ground_truth)
        teacher_rollouts = None
        if teacher is not None:
            t_pairs, t_sides, t_decode = teacher
            t_rows = [i for i, p in enumerate(t_pairs.tolist()) if p in mine]
            teacher_rollouts = rollout_records(t_rows, t_pairs, t_sides, t_decode(t_rows),
                                               ground_truth)
        scored: ScoredBatch = self.scorer.score(rollouts, config, teacher_rollouts)
        if len(scored.scores) != len(rows):
            raise RuntimeError(f"scorer returned {len(scored.scores)} scores "
                               f"for {len(rows)} rollouts")
        return rows, [float(r) for r in scored.rewards], dict(scored.metrics)


def _all_gather(obj: Any, size: int, group: Any) -> list[Any]:
    out: list[Any] = [None] * size
    torch.distributed.all_gather_object(out, obj, group=group)
    return out


def response_decoder(tokenizer: Any, response_tokens: Tensor, prompt_lengths: Tensor,
                     response_lengths: Tensor) -> Decoder:
    """rows -> response texts: tokens[prompt_length:response_length] through the tokenizer
    (NeMo's ``ids_to_text``), as NeMo-Aligner's rollout table decodes them."""

    def decode(rows: Sequence[int]) -> list[str]:
        return [tokenizer.ids_to_text(
            response_tokens[r, int(prompt_lengths[r]):int(response_lengths[r])].tolist())
            for r in rows]

    return decode
