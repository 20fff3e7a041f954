"""``coreward rephrase IN --out OUT``: add k validated LLM rephrasings to every record.

Examples::

    # any OpenAI-compatible server: trtllm-serve, vLLM, NIM
    coreward rephrase math_train.jsonl --out math_pairs.jsonl --backend openai \\
        --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-32B -k 2 --concurrency 32 \\
        --extra-body '{"chat_template_kwargs": {"enable_thinking": false}}'
    # a local Hugging Face model
    coreward rephrase in.jsonl --out out.jsonl --backend hf --model path/to/model --concurrency 1

Exit status: 0 when every input record is in OUT, 1 when some failed (rerun the same
command to retry only those), 2 on bad arguments or when the backend refuses requests.
"""
from __future__ import annotations

import json
import os
import sys

from nemo_coreward.errors import CommandParser, one_line_errors


def build_parser() -> CommandParser:
    from nemo_coreward.data.rephrase.backends import SamplingConfig
    from nemo_coreward.data.rephrase.pipeline import PipelineConfig
    from nemo_coreward.data.rephrase.validate import ValidationConfig

    s, p, v = SamplingConfig(), PipelineConfig(), ValidationConfig()
    parser = CommandParser(prog="coreward rephrase", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="pair records (JSONL or parquet)")
    parser.add_argument("--out", required=True, help="output JSONL (appended to; rerun resumes)")
    parser.add_argument("--rejected", help="side file of rejected candidates "
                                           "(default OUT.rejected.jsonl)")
    parser.add_argument("--limit", type=int, help="only the first N input records")
    b = parser.add_argument_group("backend")
    b.add_argument("--backend", choices=("openai", "hf", "trtllm"), default="openai")
    b.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    b.add_argument("--model", required=True, help="served model name, or model path (hf, trtllm)")
    b.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default OPENAI_API_KEY)")
    b.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    b.add_argument("--max-n", type=int,
                   help="openai backend: most completions per request (1 for servers "
                        "without the n field)")
    b.add_argument("--device", default="cpu", help="hf backend: torch device")
    b.add_argument("--dtype", help="hf backend: torch dtype name, e.g. bfloat16")
    b.add_argument("--gguf-file", help="hf backend: GGUF file inside --model")
    g = parser.add_argument_group("sampling (paper defaults)")
    g.add_argument("--temperature", type=float, default=s.temperature)
    g.add_argument("--top-p", type=float, default=s.top_p)
    g.add_argument("--max-tokens", type=int, default=s.max_tokens)
    g.add_argument("--seed", type=int)
    g.add_argument("--extra-body", type=json.loads, default={},
                   help="JSON object merged into each HTTP request body")
    g.add_argument("--template", help="prompt template file with one {question} slot")
    r = parser.add_argument_group("pipeline")
    r.add_argument("-k", type=int, default=p.k, help="rephrasings per question")
    r.add_argument("--concurrency", type=int, default=p.concurrency,
                   help="records (and so requests) in flight at once")
    r.add_argument("--max-candidates", type=int, help="candidates per record (default 3k)")
    r.add_argument("--retries", type=int, default=p.retries)
    r.add_argument("--backoff", type=float, default=p.backoff_s, help="first retry wait, s")
    r.add_argument("--no-progress", action="store_true")
    c = parser.add_argument_group("validation")
    c.add_argument("--copy-ngram", type=int, default=v.copy_ngram)
    c.add_argument("--max-copy-overlap", type=float, default=v.max_copy_overlap)
    c.add_argument("--min-length-ratio", type=float, default=v.min_length_ratio)
    c.add_argument("--max-length-ratio", type=float, default=v.max_length_ratio)
    c.add_argument("--max-extra-chars", type=int, default=v.max_extra_chars)
    c.add_argument("--no-require-numbers", action="store_true",
                   help="accept rewrites that drop a number of the question")
    c.add_argument("--answer-consistency", action="store_true",
                   help="solve both phrasings and reject twins whose majority answers differ")
    c.add_argument("--consistency-samples", type=int, default=v.consistency_samples)
    return parser


def _backend(args):
    from nemo_coreward.data.rephrase import backends

    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--backend openai needs --base-url")
        return backends.OpenAIChatBackend(args.base_url, args.model,
                                          api_key=os.environ.get(args.api_key_env),
                                          timeout_s=args.timeout, max_n=args.max_n)
    if args.backend == "hf":
        return backends.HFBackend(args.model, device=args.device, dtype=args.dtype,
                                  gguf_file=args.gguf_file)
    return backends.TRTLLMBackend(args.model)


@one_line_errors("coreward rephrase")
def main(argv: list[str]) -> int:
    from nemo_coreward.data.records import read_records
    from nemo_coreward.data.rephrase import backends, pipeline, prompt, validate

    args = build_parser().parse_args(argv)
    if not isinstance(args.extra_body, dict):
        raise ValueError(f"--extra-body must be a JSON object, got {args.extra_body!r}")
    config = pipeline.RephraseConfig(
        sampling=backends.SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                                         max_tokens=args.max_tokens, seed=args.seed,
                                         extra_body=args.extra_body),
        validation=validate.ValidationConfig(
            copy_ngram=args.copy_ngram, max_copy_overlap=args.max_copy_overlap,
            min_length_ratio=args.min_length_ratio, max_length_ratio=args.max_length_ratio,
            max_extra_chars=args.max_extra_chars,
            require_numbers=not args.no_require_numbers,
            answer_consistency=args.answer_consistency,
            consistency_samples=args.consistency_samples),
        pipeline=pipeline.PipelineConfig(
            k=args.k, concurrency=args.concurrency, max_candidates=args.max_candidates,
            retries=args.retries, backoff_s=args.backoff, progress=not args.no_progress),
        template=prompt.load_template(args.template) if args.template else prompt.Template(),
    )
    records, repaired = read_records(args.input)
    if args.limit is not None:
        records = records[: args.limit]
    backend = _backend(args)
    summary = pipeline.run(records, args.out, backend, config, rejected_path=args.rejected,
                           repaired=repaired)
    print(summary.format())
    if summary.failed:
        print(f"{summary.failed} records failed; rerun the same command to retry them",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
