"""Held-out greedy accuracy, before and after training.

Label-free training must be judged against known answers it never saw: the held-out split
of the synthetic generator (no maths problem shared with the training split), or a records
file with answers. Every side of every pair (question and twins) is answered greedily;
accuracy compares the extracted answer with the known one using the run's own extractor
fallbacks and equivalence mode, so "accuracy" means what the reward means by "same".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_coreward.answers import extract_answer
from nemo_coreward.data import PairRecord, load_records, synthetic
from nemo_coreward.embedded.data import DataConfig, Prompt
from nemo_coreward.embedded.prompts import PromptConfig, render
from nemo_coreward.embedded.rollout import Autocast, SamplingConfig, encode_prompts, sample
from nemo_coreward.reward import grader_for


@dataclass(frozen=True)
class EvalConfig:
    """enabled: run the before/after evaluation. every: also evaluate every N steps during
    training, logged into that step's metrics as ``heldout_accuracy`` (what the collapse
    alarm and the report's held-out curve read); 0 = before and after only. num_pairs:
    held-out pairs (each side is a prompt). path: a records file with answers instead of
    the synthetic held-out split. max_new_tokens: greedy budget (null = the rollout
    budget)."""

    enabled: bool = True
    every: int = 0
    num_pairs: int = 32
    path: str | None = None
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.num_pairs < 1:
            raise ValueError(f"eval.num_pairs must be >= 1, got {self.num_pairs}")
        if self.every < 0:
            raise ValueError(f"eval.every must be >= 0, got {self.every}")


def heldout_pairs(cfg: EvalConfig, data: DataConfig, seed: int) -> list[PairRecord]:
    if cfg.path:
        records = [r for r in load_records(cfg.path) if r.answer is not None][: cfg.num_pairs]
        if not records:
            raise ValueError(f"eval.path {cfg.path!r}: no record has an answer")
        return records
    s = data.synthetic
    return synthetic.generate(cfg.num_pairs, families=s.families, levels=s.levels,
                              k=max(1, min(s.k, data.max_rephrasings)), seed=seed,
                              split="heldout")


def eval_prompts(records: list[PairRecord], max_rephrasings: int) -> list[Prompt]:
    return [Prompt(r.id, side, text, r.answer)
            for r in records
            for side, text in enumerate([r.question, *r.rephrasings[:max_rephrasings]])]


def evaluate(model: Any, tokenizer: Any, prompts: list[Prompt], prompt_cfg: PromptConfig,
             sampling: SamplingConfig, equivalence: str, fallbacks: tuple[str, ...],
             timeout_s: float, max_new_tokens: int | None, device: Any,
             autocast: Autocast = None) -> dict[str, float]:
    """accuracy, boxed_rate (a final answer was found) and twin_agreement (all sides of a
    pair gave equivalent non-empty answers), each over the held-out prompts/pairs."""
    ids, mask = encode_prompts(tokenizer, render(tokenizer, [p.text for p in prompts], prompt_cfg),
                               sampling.max_prompt_tokens, device)
    out = sample(model, tokenizer, ids, mask, sampling, greedy=True,
                 max_new_tokens=max_new_tokens, autocast=autocast)
    grader = grader_for(equivalence, timeout_s)
    answers = [extract_answer(text, fallbacks) for text in out.texts]
    correct = [bool(a) and grader.equivalent(p.answer or "", a) for a, p in zip(answers, prompts)]
    by_pair: dict[str, list[str]] = {}
    for a, p in zip(answers, prompts):
        by_pair.setdefault(p.pair_id, []).append(a)
    multi = [v for v in by_pair.values() if len(v) > 1]
    agree = [all(a and grader.equivalent(a, v[0]) for a in v) for v in multi]
    return {
        "accuracy": sum(correct) / len(prompts),
        "boxed_rate": sum(1 for a in answers if a) / len(prompts),
        "twin_agreement": sum(agree) / len(multi) if multi else float("nan"),
        "num_prompts": float(len(prompts)),
        "response_tokens": out.num_tokens / len(prompts),
    }
