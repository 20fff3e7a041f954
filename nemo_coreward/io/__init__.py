"""Files that survive a hard kill: atomic whole-file writes and JSON Lines.

The lowest layer of the project (standard library only): trainers, the server, the data
pipeline and the evaluator all write through it, so each of these mechanisms exists once.
"""
from nemo_coreward.io.atomic import atomic_file, atomic_write, fsync_dir
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
    repair_text,
    write_jsonl,
)

__all__ = [
    "JsonlAppender", "JsonlError", "JsonlRows", "append_jsonl", "atomic_file", "atomic_write",
    "cut_after", "dumps_line", "fsync_dir", "loads_line", "mend_tail", "parse_jsonl",
    "read_jsonl", "repair_text", "write_jsonl",
]
