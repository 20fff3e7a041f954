"""Shared stand-ins: a character tokenizer, scripted rollout batches, and a real word-level
Hugging Face tokenizer directory for preflight."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from nemo_coreward.reward import Rollout

EOS = 0


class CharTokenizer:
    """Bytes as ids (shifted by 1 so 0 is EOS); enough of NeMo's tokenizer interface."""

    eos_id = EOS

    def text_to_ids(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")]

    def ids_to_text(self, ids) -> str:
        return bytes(i - 1 for i in ids if i != EOS).decode("utf-8", errors="replace")


def rollout_batch(rows: list[tuple[int, int, str]], prompt: str = "Q?") -> dict[str, torch.Tensor]:
    """A gathered rollout batch for (pair_id, side, response text) rows."""
    tok = CharTokenizer()
    p = tok.text_to_ids(prompt)
    seqs = [p + tok.text_to_ids(text) + [EOS] for _, _, text in rows]
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(rows), width), EOS, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return {
        "response_tokens": tokens,
        "prompt_lengths": torch.full((len(rows),), len(p), dtype=torch.long),
        "response_lengths": torch.tensor([len(s) for s in seqs], dtype=torch.long),
        "pair_id": torch.tensor([r[0] for r in rows], dtype=torch.long),
        "side": torch.tensor([r[1] for r in rows], dtype=torch.long),
    }


def records(rows: list[tuple[int, int, str]], truth: dict[int, str] | None = None) -> list[Rollout]:
    """The same rows as Rollout records (what in-process scoring of the whole batch sees).

    The decoded text includes the EOS the batch carries, which the char tokenizer drops."""
    truth = truth or {}
    return [Rollout(p, s, text, ground_truth=truth.get(p)) for p, s, text in rows]


def scripted_rows(num_pairs: int, num_rollouts: int, seed: int = 0) -> list[tuple[int, int, str]]:
    """Boxed answers drawn from a few values, so votes, ties and empty answers all occur."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for pair in range(num_pairs):
        for side in (0, 1):
            for _ in range(num_rollouts):
                k = int(torch.randint(0, 4, (1,), generator=g))
                text = "no answer" if k == 3 else f"so \\boxed{{{pair % 3 + k}}}"
                rows.append((pair, side, text))
    return rows


def entry_script():
    """examples/train_gpt_grpo_coreward.py as a module (it imports NeMo-Aligner: call this
    only in .venv-aligner)."""
    path = Path(__file__).resolve().parents[2] / "examples/train_gpt_grpo_coreward.py"
    spec = importlib.util.spec_from_file_location("train_gpt_grpo_coreward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_word_tokenizer(path: Path, words: list[str]) -> None:
    """A real Hugging Face fast tokenizer (one token per whitespace-separated word) saved
    the way a model directory holds one: what AutoTokenizer loads, built here offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(str(path))
