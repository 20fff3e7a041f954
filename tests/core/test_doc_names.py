"""Every name the docs and docstrings give a reader must exist: module paths
(``nemo_coreward.x.y``), source files, ``coreward`` commands, the embedded trainer's config
keys, the modules a package docstring lists, and the fields a config docstring describes.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import typing
from functools import cache
from pathlib import Path

import pytest

from nemo_coreward.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SOURCES = sorted((ROOT / "nemo_coreward").rglob("*.py"))
# Pages and code that speak of the embedded trainer's config (the Aligner pages speak of
# NeMo's keys, whose first parts often have the same names).
TRAIN_KEY_TEXTS = [ROOT / "README.md", ROOT / "docs" / "embedded.md",
                   ROOT / "docs" / "evaluation.md", ROOT / "docs" / "results.md",
                   *sorted((ROOT / "nemo_coreward" / "embedded").glob("*.py")),
                   *sorted((ROOT / "conf" / "embedded").glob("*.yaml"))]

DOTTED = re.compile(r"\bnemo_coreward(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
FILE = re.compile(r"\bnemo_coreward/[A-Za-z0-9_/.]*[A-Za-z0-9_]")
COMMAND = re.compile(r"(?:^|[`$(]|\s)coreward ([a-z][a-z-]*)\b", re.M)
KEY = re.compile(r"(?:`|\+\+|\s)((?:[a-z_]+\.)+[a-z_]+)(?==|`)")
SUFFIXES = (".py", ".md", ".yaml", ".yml", ".json", ".jsonl", ".txt", ".ckpt", ".pt")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def _stale(found: dict[str, set[str]], known: dict[str, str]) -> list[str]:
    return sorted(f"{name} (in {', '.join(sorted(where))})"
                  for name, where in found.items() if name not in known)


@cache
def find_module_paths_exist() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*DOCS, *SOURCES]:
        for name in set(DOTTED.findall(_text(path))):
            if not _resolves(name):
                found.setdefault(name, set()).add(_rel(path))
    return found


@cache
def find_source_files_named_in_docs_exist() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*DOCS, *SOURCES]:
        for name in set(FILE.findall(_text(path))):
            if not (ROOT / name).exists():
                found.setdefault(name, set()).add(_rel(path))
    return found


@cache
def find_coreward_commands_exist() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*DOCS, *SOURCES]:
        for name in set(COMMAND.findall(_text(path))):
            if name not in COMMANDS:
                found.setdefault(f"coreward {name}", set()).add(_rel(path))
    return found


@cache
def _train_fields() -> dict[str, type]:
    from nemo_coreward.embedded.config import TrainConfig

    return _fields(TrainConfig)


def _fields(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _key_exists(key: str) -> bool:
    node: typing.Any = None
    fields = _train_fields()
    for part in key.split("."):
        if part not in fields:
            return False
        node = fields[part]
        args = [a for a in typing.get_args(node) if dataclasses.is_dataclass(a)]
        node = args[0] if args else node
        fields = _fields(node) if dataclasses.is_dataclass(node) else {}
    return True


@cache
def find_embedded_config_keys_exist() -> dict[str, set[str]]:
    sections = set(_train_fields())
    found: dict[str, set[str]] = {}
    for path in TRAIN_KEY_TEXTS:
        for key in set(KEY.findall(_text(path))):
            if key.split(".")[0] in sections and not key.endswith(SUFFIXES) \
                    and not _key_exists(key):
                found.setdefault(key, set()).add(_rel(path))
    return found


def _docstrings() -> typing.Iterator[tuple[Path, ast.AST, str]]:
    for path in SOURCES:
        tree = ast.parse(_text(path))
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef)) and ast.get_docstring(node):
                yield path, node, ast.get_docstring(node) or ""


BULLET_MODULE = re.compile(r"^- ``([a-z_]+)``:", re.M)


@cache
def find_package_docstrings_list_real_modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        if path.name != "__init__.py":
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        doc = ast.get_docstring(ast.parse(_text(path))) or ""
        for name in BULLET_MODULE.findall(doc):
            if not (path.parent / f"{name}.py").exists() and not (path.parent / name).is_dir():
                found.setdefault(f"{package}.{name}", set()).add(_rel(path))
    return found


FIELD_NOTE = re.compile(r"(?:^|(?<=[.;]\s)|(?<=\n))\s*([a-z][a-z0-9_]*):\s")


@cache
def find_config_docstrings_describe_real_fields() -> dict[str, set[str]]:
    """Names a dataclass docstring written as ``field: meaning`` notes that are no field."""
    found: dict[str, set[str]] = {}
    for path, node, doc in _docstrings():
        if not isinstance(node, ast.ClassDef):
            continue
        fields = {t.target.id for t in node.body
                  if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
        named = set(FIELD_NOTE.findall(doc))
        if not fields or not named & fields:
            continue  # not a field-by-field docstring
        for name in named - fields:
            found.setdefault(f"{node.name}.{name}", set()).add(_rel(path))
    return found


FINDERS = [find_module_paths_exist, find_source_files_named_in_docs_exist,
           find_coreward_commands_exist, find_embedded_config_keys_exist,
           find_package_docstrings_list_real_modules, find_config_docstrings_describe_real_fields]


@pytest.mark.parametrize("finder", FINDERS, ids=lambda f: f.__name__[5:])
def test_names_exist(finder):
    assert not _stale(finder(), {**KNOWN_ELSEWHERE, **SHOWN_ON_PURPOSE})


# Misspellings and renamed keys (embedded.config.RENAMED) the docs show on purpose, with the
# error they cause.
SHOWN_ON_PURPOSE = {"model.pathh": "docs/embedded.md", "rollout.temprature": "docs/embedded.md",
                    "loss.kl_coef": "docs/embedded.md", "loss.kl_type": "docs/embedded.md",
                    "update.adv_eps": "docs/embedded.md", "update.advantage": "docs/embedded.md"}

# Stale names in files other modules' owners are changing; each is to be fixed there, then
# removed from this list.
KNOWN_ELSEWHERE: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted({**KNOWN_ELSEWHERE, **SHOWN_ON_PURPOSE}))
def test_listed_names_are_still_found(name):
    """An entry of the lists above that is no longer found must leave its list."""
    assert any(name in finder() for finder in FINDERS), f"{name} is fixed: unlist it"
