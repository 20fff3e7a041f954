"""Text that is not valid Unicode, repaired instead of refused: the grader's names for the
project's one implementation, ``nemo_coreward.io.text`` (standard library only)."""
from __future__ import annotations

from nemo_coreward.io.text import REPLACEMENT, decode_utf8, repair_text

__all__ = ["REPLACEMENT", "decode_utf8", "repair_text"]
