"""The ``coreward`` command.

Each subcommand lives beside the code it drives and is imported only when called, so
``coreward score`` never pays for torch or transformers and a missing optional extra
only breaks the subcommand that needs it.
"""
from __future__ import annotations

import importlib
import sys

# name -> (module, help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("nemo_coreward.reward.cli", "score logged rollouts offline"),
    "train": ("nemo_coreward.embedded.cli", "run the embedded single-machine trainer"),
    "prepare": ("nemo_coreward.data.prepare_cli", "build paired records from a source"),
    "rephrase": ("nemo_coreward.data.rephrase_cli", "make twins with an LLM"),
    "serve": ("nemo_coreward.server.cli", "serve the Co-Reward reward model (PyTriton)"),
    "eval": ("nemo_coreward.eval.cli", "evaluate a model on maths benchmarks"),
    "report": ("nemo_coreward.eval.report_cli", "plot and summarise run directories"),
}


def _usage() -> str:
    lines = ["usage: coreward COMMAND [ARGS...]", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines.append("")
    lines.append("`coreward COMMAND --help` describes each command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coreward: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
