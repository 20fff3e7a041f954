"""Text that is not valid Unicode, repaired instead of refused.

A response can carry a lone UTF-16 surrogate (``"\\udbf9"`` escaped in JSON decodes to
one), and bytes from a file or the wire can be invalid UTF-8. Neither can be encoded
again, so a command that met one would die at its write, after the work was done. Each bad
character becomes U+FFFD instead, and callers count the texts they repaired. The JSONL
module, the LLM client and the reward server all repair through these two functions.
"""
from __future__ import annotations

REPLACEMENT = "\ufffd"


def repair_text(text: str) -> tuple[str, bool]:
    """``text`` with every unpaired surrogate replaced by U+FFFD (a well-formed pair is
    joined into its character), and whether anything was replaced."""
    if text.isascii():
        return text, False
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), True


def decode_utf8(data: bytes) -> tuple[str, bool]:
    """``data`` decoded as UTF-8 with each invalid sequence replaced by U+FFFD, and
    whether anything was replaced."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True
