"""Errors a user can cause, and how every ``coreward`` command ends on one.

A user who points a command at a missing file, a wrong key or an unreachable server needs
one line that names the problem and the way out, not a traceback: ``one_line_errors``
turns those errors into ``coreward CMD: <message>`` on stderr and exit status 2. What counts
as such an error: ``ValueError`` (every config, record, source and JSONL error of the
project derives from it), ``OSError`` (missing files, refused connections), ``UserError``
(a run stopped for a reason outside the code: a server refusing requests), and an
``ImportError`` of an optional extra. Anything else is a bug and keeps its traceback.
``--debug`` (or ``COREWARD_DEBUG=1``) shows the traceback of a user error too.

A command line argparse cannot parse (an unknown option, a missing or malformed value) is
such an error too: every command's parser is a ``CommandParser``, which ends it in the same
one line, ``coreward CMD: <message>; see coreward CMD --help``, exit status 2, instead of
argparse's usage block.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn

DEBUG_ENV = "COREWARD_DEBUG"
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix (a refused request, an unreachable server); the message
    names it and the way out."""


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, UserError)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def one_line(message: object) -> str:
    """``message`` on one line: its lines joined, blank ones dropped."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report(prog: str, error: BaseException) -> int:
    """Print ``error`` as ``prog``'s one-line message; the exit status to return."""
    text = one_line(error) or type(error).__name__
    if isinstance(error, ModuleNotFoundError):
        text += (": this command needs an optional extra "
                 "(pip install 'nemo_coreward[embedded,data,eval,server]')")
    print(f"{prog}: {text}", file=sys.stderr)
    return EXIT_USER_ERROR


class CommandParser(argparse.ArgumentParser):
    """The parser of a ``coreward`` command (``prog="coreward CMD"``): a command line it
    cannot parse ends in one line naming the problem and ``--help``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {one_line(message)}; see {self.prog} --help", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


Main = Callable[[list[str]], int]


def one_line_errors(prog: str) -> Callable[[Main], Main]:
    """Decorate a command's ``main(argv) -> int`` so user errors end in one line, exit 2."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: list[str]) -> int:
            try:
                return main(argv)
            except (*USER_ERRORS, ModuleNotFoundError) as error:
                own = isinstance(error, ModuleNotFoundError) and \
                    (error.name or "").startswith("nemo_coreward")
                if debug_enabled() or own:  # a module of our own missing is a bug
                    raise
                return report(prog, error)

        return run

    return wrap
