"""Text that is not valid Unicode, repaired instead of refused.

A response can carry a lone UTF-16 surrogate (``"\\udbf9"`` escaped in JSON decodes to
one), and bytes from the wire can be invalid UTF-8. Neither can be encoded, compared
reliably or sent back, and neither should cost a whole step: each bad character
becomes U+FFFD, and callers count the texts they repaired in their metrics.
"""
from __future__ import annotations

REPLACEMENT = "\ufffd"
_REPLACEMENT_BYTES = REPLACEMENT.encode()


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
