"""Turn a question into the text the model is prompted with.

The paper prompts with a system turn ("Let's think step by step and output the final
answer within \\boxed{}.") and the question as the user turn, through the model's chat
template. A 135M model rarely boxes anything under that prompt (measured: reward 0 on all
128 completions at temperature 1.0), so the CPU default adds a one-shot exchange that
shows the format; it roughly doubles the boxed answers. Models without a chat template
(base checkpoints) get a plain "Question:/Answer:" layout with the same parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_coreward.llm.prompts import PAPER_SYSTEM


@dataclass(frozen=True)
class PromptConfig:
    """system: the system turn ("" for none). example_question/example_answer: an
    optional one-shot exchange shown before the question (both empty: none)."""

    system: str = PAPER_SYSTEM
    example_question: str = ""
    example_answer: str = ""

    def __post_init__(self) -> None:
        if bool(self.example_question) != bool(self.example_answer):
            raise ValueError(
                "prompt.example_question and prompt.example_answer must be both set or both empty"
            )


def messages(question: str, cfg: PromptConfig) -> list[dict[str, str]]:
    """Chat turns for one question: [system], [example user, example assistant], user."""
    turns: list[dict[str, str]] = []
    if cfg.system:
        turns.append({"role": "system", "content": cfg.system})
    if cfg.example_question:
        turns.append({"role": "user", "content": cfg.example_question})
        turns.append({"role": "assistant", "content": cfg.example_answer})
    turns.append({"role": "user", "content": question})
    return turns


def _plain(turns: list[dict[str, str]]) -> str:
    parts = []
    for turn in turns:
        if turn["role"] == "system":
            parts.append(turn["content"])
        elif turn["role"] == "user":
            parts.append(f"Question: {turn['content']}")
        else:
            parts.append(f"Answer: {turn['content']}")
    return "\n\n".join(parts) + "\n\nAnswer:"


def render(tokenizer: Any, questions: list[str], cfg: PromptConfig) -> list[str]:
    """Prompt texts, ending where the model's answer starts."""
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(messages(q, cfg), tokenize=False,
                                          add_generation_prompt=True)
            for q in questions
        ]
    return [_plain(messages(q, cfg)) for q in questions]
