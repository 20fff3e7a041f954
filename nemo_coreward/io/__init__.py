"""Files that survive a hard kill: atomic whole-file writes, JSON Lines, and the repair of
text that is not valid Unicode.

The lowest layer of the project (standard library only): trainers, the server, the data
pipeline and the evaluator all write through it, so each of these mechanisms exists once.
"""
from nemo_coreward.io.atomic import atomic_file, atomic_write, fsync_dir, leftover_temporaries
from nemo_coreward.io.jsonl import (
    JsonlAppender,
    JsonlError,
    JsonlRows,
    append_jsonl,
    cut_after,
    dumps_line,
    loads_line,
    mend_tail,
    parse_jsonl,
    read_jsonl,
    repair_json,
    write_jsonl,
)
from nemo_coreward.io.text import decode_utf8, repair_text

__all__ = [
    "JsonlAppender", "JsonlError", "JsonlRows", "append_jsonl", "atomic_file", "atomic_write",
    "cut_after", "decode_utf8", "dumps_line", "fsync_dir", "leftover_temporaries", "loads_line",
    "mend_tail", "parse_jsonl", "read_jsonl", "repair_json", "repair_text", "write_jsonl",
]
