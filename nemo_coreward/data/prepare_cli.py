"""``coreward prepare SOURCE --out FILE``: write pair records from a source.

Examples::

    coreward prepare math --split train --out data/math_train.jsonl
    coreward prepare gsm8k --split test --data-files gsm8k/test-00000-of-00001.parquet --out g.jsonl
    coreward prepare coreward-math --out data/math_pairs.parquet
    coreward prepare synthetic --n 512 --families add double --levels 1 --k 2 --out syn.jsonl
    coreward prepare --list
"""
from __future__ import annotations

import sys

from nemo_coreward.errors import CommandParser, one_line_errors

# flag dest -> option name understood by the sources
_OPTION_FLAGS = ("split", "data_files", "hub_id", "config", "cache_dir", "question_column",
                 "answer_column", "n", "families", "levels", "k", "seed", "version",
                 "modules", "regime")


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="coreward prepare",
        description="Build paired records (JSONL, or parquet for a .parquet name) from a source.",
    )
    parser.add_argument("source", nargs="?", help="source name (see --list)")
    parser.add_argument("--out", help="output file (.jsonl or .parquet)")
    parser.add_argument("--list", action="store_true", help="list the sources and exit")
    parser.add_argument("--limit", type=int, help="keep only the first N records")
    hub = parser.add_argument_group("hub sources")
    hub.add_argument("--split", help="split to read (train, test, ...)")
    hub.add_argument("--data-files", nargs="+",
                     help="local parquet/JSONL files or folders in the source's format, read "
                          "instead of the hub (for MATH also the original release's folder)")
    hub.add_argument("--hub-id", help="override the source's default hub data set id")
    hub.add_argument("--config", help="hub data set config name")
    hub.add_argument("--cache-dir", help="datasets cache folder")
    hub.add_argument("--question-column", help="question column (amc, aime, table)")
    hub.add_argument("--answer-column", help="answer column (amc, aime, table)")
    gen = parser.add_argument_group("generated sources")
    gen.add_argument("--n", type=int,
                     help="records (synthetic) or records per module (mathematics)")
    gen.add_argument("--families", nargs="+", help="synthetic families (add double sub mul word)")
    gen.add_argument("--levels", nargs="+", type=int, help="synthetic difficulty levels (1 2)")
    gen.add_argument("--k", type=int, help="synthetic rephrasings per question")
    gen.add_argument("--seed", type=int, help="generator seed")
    gen.add_argument("--version", help="CHAMP data version (v0)")
    gen.add_argument("--modules", nargs="+",
                     help="mathematics_dataset modules, e.g. arithmetic__mul")
    gen.add_argument("--regime", help="mathematics_dataset regime (train-easy ... extrapolate)")
    return parser


@one_line_errors("coreward prepare")
def main(argv: list[str]) -> int:
    from nemo_coreward.data.records import write_records
    from nemo_coreward.data.sources import SOURCES, load_source

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for source in SOURCES.values():
            print(f"{source.name:<20} {source.description}")
            print(f"{'':<20} options: {', '.join(source.options)}")
        return 0
    if not args.source or not args.out:
        parser.error("SOURCE and --out are required (or --list)")
    options = {name: getattr(args, name) for name in _OPTION_FLAGS}
    records = load_source(args.source, limit=args.limit, **options)
    write_records(records, args.out)
    no_answer = sum(r.answer is None for r in records)
    twins = sum(bool(r.rephrasings) for r in records)
    print(f"wrote {len(records)} records from {args.source} to {args.out} "
          f"({twins} with rephrasings, {no_answer} without an answer)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
