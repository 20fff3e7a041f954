"""``coreward eval MODEL --benchmarks ... --k 8``: evaluate a model on maths benchmarks.

MODEL is a Hugging Face directory, a ``.gguf`` file or ``default`` (the bundled
SmolLM2-135M-Instruct), run in this process; with ``--base-url`` it is the model name an
OpenAI-compatible server (vLLM, trtllm-serve) knows it by. ``--preset paper`` applies the
Co-Reward paper's protocol; flags given explicitly override a preset. See
docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from nemo_coreward.answers import FALLBACKS, MODES
from nemo_coreward.errors import CommandParser, one_line_errors

DEFAULTS: dict[str, Any] = {
    "benchmarks": "synthetic",
    "k": 8,
    "temperature": 0.8,
    "greedy": True,
    "max_new_tokens": 1024,
    "equivalence": "math_verify",
}


def _parser() -> CommandParser:
    p = CommandParser(prog="coreward eval", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="HF directory, .gguf file, 'default', or a served model name")
    p.add_argument("--benchmarks", help="comma-separated: math500,gsm8k,amc23,aime24,champ,"
                   f"synthetic (default {DEFAULTS['benchmarks']})")
    p.add_argument("--preset", choices=["paper"], help="a named protocol (docs/evaluation.md)")
    p.add_argument("--k", type=int, help=f"samples per problem (default {DEFAULTS['k']}; 0: none)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 0.8)")
    p.add_argument("--top-p", type=float, default=1.0)
    greedy = p.add_mutually_exclusive_group()
    greedy.add_argument("--greedy", dest="greedy", action="store_true", default=None,
                        help="also one greedy response per problem (default on)")
    greedy.add_argument("--no-greedy", dest="greedy", action="store_false")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--limit", type=int, help="first N problems of each benchmark")
    p.add_argument("--out", help="output directory (default runs/eval/<model name>)")
    p.add_argument("--data-files", action="append", default=[], metavar="NAME=PATH",
                   help="local files for a hub benchmark, e.g. math500=/data/math500.jsonl")
    p.add_argument("--equivalence", choices=MODES, help="answer grader (default math_verify)")
    p.add_argument("--fallbacks", default="", help=f"answer fallbacks: {','.join(FALLBACKS)}")
    p.add_argument("--system-prompt", help="system turn (default: the paper's)")
    p.add_argument("--example-question", default="", help="one-shot example question")
    p.add_argument("--example-answer", default="", help="one-shot example answer")
    p.add_argument("--batch-size", type=int, default=8, help="problems per generation call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="local model: auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=2, help="local model: CPU threads")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--concurrency", type=int, default=8, help="HTTP: questions in flight")
    p.add_argument("--retries", type=int, default=4, help="HTTP: retries per request")
    p.add_argument("--timeout", type=float, default=600.0, help="HTTP: seconds per request")
    p.add_argument("--no-progress", action="store_true")
    return p


def _data_files(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data-files {item!r}: expected NAME=PATH")
        out.setdefault(name.strip(), []).append(path)
    return out


def _config(args: argparse.Namespace):
    from nemo_coreward.embedded.prompts import PromptConfig
    from nemo_coreward.eval.runner import PRESETS, EvalConfig
    from nemo_coreward.llm.prompts import PAPER_SYSTEM

    values: dict[str, Any] = dict(DEFAULTS)
    if args.preset:
        values.update(PRESETS[args.preset])
    for key in ("benchmarks", "k", "temperature", "greedy", "max_new_tokens", "equivalence"):
        given = getattr(args, key)
        if given is not None:
            values[key] = given
            if key == "k":  # an explicit --k applies to every benchmark
                values.pop("k_per_benchmark", None)
    if isinstance(values["benchmarks"], str):
        values["benchmarks"] = tuple(b.strip() for b in values["benchmarks"].split(",")
                                     if b.strip())
    base_prompt = values.pop("prompt", PromptConfig(system=PAPER_SYSTEM))
    values["prompt"] = PromptConfig(
        system=base_prompt.system if args.system_prompt is None else args.system_prompt,
        example_question=args.example_question, example_answer=args.example_answer,
    )
    values["fallbacks"] = tuple(f for f in args.fallbacks.split(",") if f)
    values["batch_size"] = args.batch_size
    return EvalConfig(**values)


def _backend(args: argparse.Namespace, cfg):
    from nemo_coreward.eval.backends import HTTPConfig, LocalHFBackend, OpenAIBackend

    if args.base_url:
        http = HTTPConfig(concurrency=args.concurrency, retries=args.retries,
                          timeout_s=args.timeout, top_p=args.top_p, seed=args.seed)
        return OpenAIBackend(args.base_url, args.model, prompt=cfg.prompt, config=http)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar: the evaluation's
    torch.manual_seed(args.seed)
    path = None if args.model == "default" else args.model
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(f"model {path!r}: no such directory or file (use --base-url "
                                "for a served model)")
    return LocalHFBackend.from_path(path, device=args.device, threads=args.threads,
                                    prompt=cfg.prompt, top_p=args.top_p,
                                    batch_size=max(64, cfg.k))


@one_line_errors("coreward eval")
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from nemo_coreward.eval.runner import evaluate, load_benchmarks
    from nemo_coreward.eval.tables import results_markdown

    cfg = _config(args)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(args.model.rstrip("/")).name) or "model"
    out = Path(args.out or Path("runs") / "eval" / name)
    benchmarks = load_benchmarks(cfg, _data_files(args.data_files), args.limit)
    backend = _backend(args, cfg)
    summary = evaluate(backend, cfg, out, model=args.model, benchmarks=benchmarks,
                       progress=not args.no_progress)
    print(results_markdown(summary))
    print(f"written to {out}/results.json and results.md")
    return 0
