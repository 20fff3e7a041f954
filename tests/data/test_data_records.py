"""The pair-record schema: round trips, and errors that name the file, line and key."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nemo_coreward.data.records import PairRecord, RecordError, load_records, sides, write_records

RECORDS = [
    PairRecord("a", "What is 3 + 4?", ("Add 3 and 4.",), "7", "synthetic",
               {"family": "add", "level": 1, "operands": [3, 4]}),
    PairRecord("b", "Combien font 2 × 5 ?", (), None, "local", {}),
    PairRecord("c", "Solve $x^2=4$.", ("Find x with $x^2=4$.", "x squared is 4; x?"), "\\pm 2",
               "math", {"level": "Level 1", "nested": {"k": [1, 2]}}),
]


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet"])
def test_round_trip(tmp_path, name):
    path = write_records(RECORDS, tmp_path / name)
    assert load_records(path) == RECORDS
    assert sorted(os.listdir(tmp_path)) == [name]  # the temporary file was replaced, not left


def test_sides_lists_original_then_rephrasings():
    assert sides(RECORDS[2]) == ["Solve $x^2=4$.", "Find x with $x^2=4$.", "x squared is 4; x?"]
    assert sides(RECORDS[1]) == ["Combien font 2 × 5 ?"]


def test_defaults_and_blank_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "x", "question": "q?"}\n\n   \n{"id": "y", "question": "r?"}\n')
    recs = load_records(path)
    assert [r.id for r in recs] == ["x", "y"]
    assert recs[0] == PairRecord("x", "q?", (), None, "", {})


def _write_lines(tmp_path, *rows):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "ok", "question": "What is 1 + 1?"}


@pytest.mark.parametrize(
    "row, fragment",
    [
        ("{not json", ":2: not valid JSON"),
        ({"id": "x"}, ":2: missing required key 'question'"),
        ({"question": "q"}, ":2: missing required key 'id'"),
        ({"id": "x", "question": "q", "rephrasing": ["t"]}, ":2: unknown key 'rephrasing'"),
        ({"id": "x", "question": "q", "answer": 7}, ":2: key 'answer': must be a string or null"),
        ({"id": "x", "question": "q", "rephrasings": "t"}, ":2: key 'rephrasings': must be a list"),
        ({"id": "x", "question": "q", "rephrasings": ["ok", ""]}, ":2: key 'rephrasings': item 1"),
        ({"id": "x", "question": "  "}, ":2: key 'question': must be a non-empty string"),
        ({"id": 5, "question": "q"}, ":2: key 'id': must be a non-empty string"),
        ({"id": "x", "question": "q", "meta": [1]}, ":2: key 'meta': must be an object"),
        ([1, 2], ":2: expected an object"),
    ],
)
def test_jsonl_errors_name_file_line_and_key(tmp_path, row, fragment):
    path = _write_lines(tmp_path, GOOD, row)
    with pytest.raises(RecordError) as info:
        load_records(path)
    assert str(path) + fragment in str(info.value)


def test_duplicate_id_names_both_lines(tmp_path):
    path = _write_lines(tmp_path, GOOD, {"id": "z", "question": "q"}, GOOD)
    with pytest.raises(RecordError, match=rf"{path}:3: duplicate id 'ok' \(first at {path}:1\)"):
        load_records(path)


def test_parquet_errors_name_row(tmp_path):
    path = tmp_path / "bad.parquet"
    table = pa.table({"id": ["a", "a"], "question": ["q1", "q2"]})
    pq.write_table(table, path)
    with pytest.raises(RecordError, match=r"bad.parquet: row 2: duplicate id 'a'"):
        load_records(path)
    pq.write_table(pa.table({"id": ["a"], "question": ["q"], "answer": [3]}), path)
    with pytest.raises(RecordError, match=r"row 1: key 'answer'"):
        load_records(path)


def test_parquet_from_other_writers_with_struct_meta(tmp_path):
    path = tmp_path / "ext.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": ["q"], "rephrasings": [["r"]],
                             "meta": [{"level": "Level 2"}]}), path)
    assert load_records(path) == [PairRecord("a", "q", ("r",), None, "", {"level": "Level 2"})]


def test_write_refuses_duplicates_and_keeps_old_file(tmp_path):
    path = write_records(RECORDS[:1], tmp_path / "r.jsonl")
    before = path.read_bytes()
    with pytest.raises(RecordError, match="duplicate id 'a'"):
        write_records([RECORDS[0], RECORDS[0]], path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r.jsonl"]


def test_record_validates_in_code():
    with pytest.raises(RecordError, match="key 'meta': must be JSON-serialisable"):
        PairRecord("a", "q", meta={"x": object()})
    assert PairRecord("a", "q", ["t"]).rephrasings == ("t",)  # lists become tuples


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such records file"):
        load_records(tmp_path / "absent.jsonl")
