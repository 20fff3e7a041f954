"""Errors a user can cause, and how every ``coreward`` command ends on one.

A user who points a command at a missing file, a wrong key or an unreachable server needs
one line that names the problem and the way out, not a traceback: ``one_line_errors``
turns those errors into ``coreward CMD: <message>`` on stderr and exit status 2. What counts
as such an error: ``ValueError`` (every config, record, source and JSONL error of the
project derives from it), ``OSError`` (missing files, refused connections), ``UserError``
(a run stopped for a reason outside the code: a server refusing requests), and an
``ImportError`` of an optional extra. Anything else is a bug and keeps its traceback.
``--debug`` (or ``COREWARD_DEBUG=1``) shows the traceback of a user error too.
"""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

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
