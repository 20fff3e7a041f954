"""``coreward serve``: run the Co-Reward reward model server (PyTriton).

    coreward serve [--config PATH] [key=value ...]

Keys are those of ``conf/server/co_reward_server.yaml`` (see ``ServerConfig``); e.g.
``coreward serve host=0.0.0.0 http_port=6000 workers=8``. SIGTERM or SIGINT stops it
cleanly; a second signal exits at once.
"""
from __future__ import annotations

import dataclasses
import logging
import sys

from nemo_coreward.errors import CommandParser, one_line_errors
from nemo_coreward.server.config import DEFAULT_CONFIG, load_server_config


def _parser() -> CommandParser:
    p = CommandParser(prog="coreward serve", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--config", default=None,
                   help=f"server YAML (default: {DEFAULT_CONFIG} when present); "
                        "'none' for the built-in defaults")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    return p


@one_line_errors("coreward serve")
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.config is None:  # an installed package has no conf/: use the built-in defaults
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    else:
        path = None if args.config.lower() == "none" else args.config
    config = load_server_config(path, args.overrides)
    if args.print_config:
        for key, value in dataclasses.asdict(config).items():
            print(f"{key}: {value}")
        return 0
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nemo_coreward.server.app import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
