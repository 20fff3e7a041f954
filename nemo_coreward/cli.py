"""The ``coreward`` command.

Each subcommand lives beside the code it drives and is imported only when called, so
``coreward score`` never pays for torch or transformers and a missing optional extra
only breaks the subcommand that needs it. Every user error ends in one line and exit
status 2 (``nemo_coreward.errors``): an unknown command, a command line the command's parser
cannot read, and what the command raises; ``--debug`` anywhere on the command line shows
the traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys

from nemo_coreward.errors import DEBUG_ENV, EXIT_USER_ERROR, one_line_errors

# name -> (module, help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("nemo_coreward.reward.cli", "score logged rollouts offline"),
    "train": ("nemo_coreward.embedded.cli", "run the embedded single-machine trainer"),
    "prepare": ("nemo_coreward.data.prepare_cli", "build paired records from a source"),
    "rephrase": ("nemo_coreward.data.rephrase_cli", "make twins with an LLM"),
    "serve": ("nemo_coreward.server.cli", "serve the Co-Reward reward model (PyTriton)"),
    "eval": ("nemo_coreward.eval.cli", "evaluate a model on maths benchmarks"),
    "report": ("nemo_coreward.eval.report_cli", "plot and summarise run directories"),
    "preflight": ("nemo_coreward.aligner.preflight",
                  "check a NeMo-Aligner GRPO config; print its run plan"),
}


def _usage() -> str:
    lines = ["usage: coreward COMMAND [ARGS...]", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines.append("")
    lines.append("`coreward COMMAND --help` describes each command; --debug shows the "
                 "traceback of an error.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        previous = os.environ.get(DEBUG_ENV)
        os.environ[DEBUG_ENV] = "1"  # read by the commands' own handlers too
        try:
            return main([a for a in argv if a != "--debug"])
        finally:
            if previous is None:
                del os.environ[DEBUG_ENV]
            else:
                os.environ[DEBUG_ENV] = previous
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coreward: unknown command {name!r} (commands: {', '.join(COMMANDS)}); "
              "see coreward --help", file=sys.stderr)
        return EXIT_USER_ERROR

    @one_line_errors(f"coreward {name}")
    def run(args: list[str]) -> int:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(args) or 0)

    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
