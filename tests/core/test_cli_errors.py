"""Every user error of every ``coreward`` command ends in one line and exit status 2.

Each command runs as a user would (a subprocess through ``python -m nemo_coreward.cli``)
with input a user can get wrong: a model or data path that does not exist, a hub data set on
a machine without hub access, a missing input file, an unknown config key, an unknown
option or a malformed one (no argparse usage block: ``CommandParser``).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nemo_coreward.cli import COMMANDS
from nemo_coreward.errors import CommandParser


def _run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
               "PYTHONWARNINGS": "ignore", **env}
    return subprocess.run([sys.executable, "-m", "nemo_coreward.cli", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=environ, check=False)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    # Lightning announces its precision on stderr before any error; it is not one.
    return [line for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith("Using bfloat16 Automatic Mixed")]


CASES = {
    "prepare-hub-offline": (["prepare", "math500", "--out", "x.jsonl"], {},
                            "--data-files"),
    "prepare-hub-unreachable": (["prepare", "gsm8k", "--out", "x.jsonl"],
                                {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
                                "cannot reach the Hugging Face hub"),
    "eval-hub-offline": (["eval", "default", "--benchmarks", "math500", "--out", "ev"], {},
                         "--data-files math500=PATH"),
    "rephrase-missing-input": (["rephrase", "missing.jsonl", "--out", "o.jsonl", "--model", "m",
                                "--base-url", "http://127.0.0.1:9"], {}, "missing.jsonl"),
    "score-missing-input": (["score", "missing.jsonl", "--out", "s.jsonl"], {}, "missing.jsonl"),
    "report-missing-run": (["report", "no_run", "--out", "r"], {}, "no_run"),
    "serve-missing-config": (["serve", "--config", "missing.yaml"], {}, "missing.yaml"),
    "serve-unknown-key": (["serve", "wrkers=3"], {}, "wrkers"),
    "train-missing-model": pytest.param(["train", "model.path=/nonexistent/model"], {},
                                        "/nonexistent/model", marks=pytest.mark.slow),
    "train-missing-data": pytest.param(["train", "data.source=file",
                                        "data.path=/nonexistent.jsonl"], {},
                                       "/nonexistent.jsonl", marks=pytest.mark.slow),
}


@pytest.mark.parametrize("args,env,names", list(CASES.values()), ids=list(CASES))
def test_user_error_ends_in_one_line_exit_2(tmp_path, args, env, names):
    proc = _run(args, tmp_path, **env)
    lines = _error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"coreward {args[0]}: ") and names in lines[0]
    if args[0] == "train":  # no empty run directory left for `resume=true` to pick
        assert not list((tmp_path / "runs").glob("*"))


# Each command with the arguments it requires and one option it does not know.
BAD_OPTION = {
    "score": ["score", "in.jsonl", "--out", "o.jsonl", "--no-such-option"],
    "train": ["train", "--no-such-option"],
    "prepare": ["prepare", "synthetic", "--out", "o.jsonl", "--no-such-option"],
    "rephrase": ["rephrase", "in.jsonl", "--out", "o.jsonl", "--model", "m", "--no-such-option"],
    "serve": ["serve", "--no-such-option"],
    "eval": ["eval", "default", "--no-such-option"],
    "report": ["report", "run", "--out", "r", "--no-such-option"],
    "preflight": ["preflight", "--no-such-option"],
}


def test_every_command_is_checked_with_an_unknown_option():
    assert sorted(BAD_OPTION) == sorted(COMMANDS)


@pytest.mark.parametrize("args", list(BAD_OPTION.values()), ids=list(BAD_OPTION))
def test_an_unknown_option_ends_in_one_line_exit_2(tmp_path, args):
    proc = _run(args, tmp_path)
    command = args[0]
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    line = proc.stderr.rstrip("\n")
    assert line.startswith(f"coreward {command}: ") and "--no-such-option" in line
    assert line.endswith(f"; see coreward {command} --help")


BAD_COMMAND_LINES = {
    "missing-argument": (["report", "run"],
                         "coreward report: the following arguments are required: --out; "
                         "see coreward report --help"),
    "malformed-value": (["score", "in.jsonl", "--out", "o.jsonl", "--timeout", "soon"],
                        "coreward score: argument --timeout: invalid float value: 'soon'; "
                        "see coreward score --help"),
    "no-source": (["prepare", "--out", "o.jsonl"],
                  "coreward prepare: SOURCE and --out are required (or --list); "
                  "see coreward prepare --help"),
    "train-option-without-value": (["train", "--config-name"],
                                   "coreward train: --config-name needs a value; "
                                   "see coreward train --help"),
    "unknown-command": (["scroe"], f"coreward: unknown command 'scroe' (commands: "
                                   f"{', '.join(COMMANDS)}); see coreward --help"),
}


@pytest.mark.parametrize("args,line", list(BAD_COMMAND_LINES.values()),
                         ids=list(BAD_COMMAND_LINES))
def test_a_bad_command_line_ends_in_one_line_exit_2(tmp_path, args, line):
    proc = _run(args, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")


def test_command_parser_error_is_one_line(capsys):
    parser = CommandParser(prog="coreward x")
    parser.add_argument("--n", type=int, choices=[1, 2])
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--n", "3"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("coreward x: argument --n: invalid choice: 3 "
                                       "(choose from 1, 2); see coreward x --help\n")


def test_debug_shows_the_traceback(tmp_path):
    proc = _run(["score", "missing.jsonl", "--out", "s.jsonl", "--debug"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    from nemo_coreward.errors import one_line_errors

    @one_line_errors("coreward x")
    def main(argv: list[str]) -> int:
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        main([])
    monkeypatch.setenv("COREWARD_DEBUG", "0")

    @one_line_errors("coreward x")
    def refuses(argv: list[str]) -> int:
        raise ValueError("line one\nline two")

    assert refuses([]) == 2
    assert capsys.readouterr().err == "coreward x: line one line two\n"
