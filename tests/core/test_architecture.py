"""docs/architecture.md's package table is what the code imports.

The table gives each package of ``nemo_coreward`` (and each top-level module) a row whose
third column lists what it may import: sibling packages by their short name, libraries by
the names in ``LIBRARIES`` below, ``stdlib``, each with an optional note in parentheses.
Every ``import`` and ``from ... import`` of every module is read with ``ast`` (function-level
and relative imports included), so a new import of a sibling or of a listed library that
the row does not allow fails here, naming the file and line.
"""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nemo_coreward"
DOC = ROOT / "docs" / "architecture.md"

# The libraries the table may name -> the top-level modules they are imported as. An import
# of one of these modules must be listed in the importer's row; other third-party modules
# (numpy, tqdm, sympy, ...) are not checked.
LIBRARIES: dict[str, frozenset[str]] = {
    "torch": frozenset({"torch"}),
    "transformers": frozenset({"transformers"}),
    "lightning-fabric": frozenset({"lightning_fabric", "lightning"}),
    "datasets": frozenset({"datasets"}),
    "math-verify": frozenset({"math_verify"}),
    "tenacity": frozenset({"tenacity"}),
    "pytriton": frozenset({"pytriton", "tritonclient"}),
    "NeMo": frozenset({"nemo"}),
    "NeMo-Aligner": frozenset({"nemo_aligner"}),
    "Megatron": frozenset({"megatron"}),
    "TensorRT-LLM": frozenset({"tensorrt_llm"}),
    "OmegaConf": frozenset({"omegaconf"}),
    "Hydra": frozenset({"hydra"}),
    "matplotlib": frozenset({"matplotlib"}),
}
CHECKED_LIBRARIES = frozenset().union(*LIBRARIES.values())
# What the grading layers must never import, whatever their rows say, so that the reward
# server's grading workers and `coreward score` start without torch, NeMo or the server:
# these libraries, and the siblings that import them (or are the server).
GRADING = ("answers", "reward")
NOT_FOR_GRADING = {"torch", "transformers", "lightning_fabric", "nemo", "nemo_aligner",
                   "megatron", "tensorrt_llm", "pytriton", "tritonclient",
                   "server", "rl", "data", "embedded", "aligner", "eval"}

ROW = re.compile(r"^\| `nemo_coreward\.([a-z_]+)` \|(.*)\|$")


def _split_top_level(cell: str) -> list[str]:
    """``cell`` split at the commas outside parentheses."""
    items, depth, current = [], 0, ""
    for ch in cell:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [item.strip() for item in [*items, current] if item.strip()]


def parse_table(text: str) -> dict[str, list[str]]:
    """package -> the names its row's third column lists (notes in parentheses dropped)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cells = [c.strip() for c in match.group(2).split(" | ")]
        assert len(cells) == 2, f"docs/architecture.md: expected 3 cells in {line!r}"
        assert match.group(1) not in rows, f"docs/architecture.md: two rows for {match.group(1)}"
        rows[match.group(1)] = [re.sub(r"\s*\(.*\)$", "", item)
                                for item in _split_top_level(cells[1])]
    return rows


@cache
def table() -> dict[str, list[str]]:
    return parse_table(DOC.read_text(encoding="utf-8"))


def allowed(package: str) -> tuple[set[str], set[str]]:
    """The sibling packages and the library modules ``package``'s row allows."""
    siblings: set[str] = set()
    modules: set[str] = set()
    for name in table()[package]:
        if name in table():
            siblings.add(name)
        elif name in LIBRARIES:
            modules |= LIBRARIES[name]
        else:
            assert name == "stdlib", (
                f"docs/architecture.md, row {package}: {name!r} is neither a package of the "
                f"table, a library this test knows ({', '.join(LIBRARIES)}) nor 'stdlib'")
    return siblings, modules


def top_level_names() -> list[str]:
    """Each package and top-level module of ``nemo_coreward`` by its short name."""
    names = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    names += [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    return sorted(names)


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_in(source: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``source`` (the text of ``path``) imports, as absolute dotted names,
    with its line: at any depth, relative imports resolved against ``path``'s package."""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.module or "", node.lineno))
                continue
            base = _module_name(path)
            if path.name != "__init__.py":
                base = base[:-1]  # the package the module is in
            base = base[:len(base) - (node.level - 1)]
            if node.module:
                found.append((".".join([*base, node.module]), node.lineno))
            else:  # from . import a, b: each name may be a module
                found += [(".".join([*base, alias.name]), node.lineno) for alias in node.names]
    return sorted(found, key=lambda item: item[1])


def sources(package: str) -> list[Path]:
    folder = PACKAGE / package
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{package}.py"]


@cache
def imports(package: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(siblings, checked library modules) ``package`` imports -> where ("file:line")."""
    siblings: dict[str, list[str]] = {}
    libraries: dict[str, list[str]] = {}
    for path in sources(package):
        for name, line in imports_in(path.read_text(encoding="utf-8"), path):
            where = f"{path.relative_to(ROOT)}:{line}"
            parts = name.split(".")
            if parts[0] == "nemo_coreward" and len(parts) > 1 and parts[1] != package:
                siblings.setdefault(parts[1], []).append(where)
            elif parts[0] in CHECKED_LIBRARIES:
                libraries.setdefault(parts[0], []).append(where)
    return siblings, libraries


def _report(found: dict[str, list[str]], allowed_names: set[str]) -> list[str]:
    return [f"{name} ({', '.join(where)})" for name, where in sorted(found.items())
            if name not in allowed_names]


def test_every_package_and_module_has_one_row():
    assert sorted(table()) == top_level_names()


@pytest.mark.parametrize("package", top_level_names())
def test_a_package_imports_only_the_siblings_its_row_lists(package):
    siblings, _ = allowed(package)
    found, _ = imports(package)
    assert not _report(found, siblings), (
        f"{package} imports siblings its row in docs/architecture.md does not list")


@pytest.mark.parametrize("package", top_level_names())
def test_a_package_imports_only_the_listed_libraries_its_row_lists(package):
    _, modules = allowed(package)
    _, found = imports(package)
    assert not _report(found, modules), (
        f"{package} imports libraries its row in docs/architecture.md does not list")


@pytest.mark.parametrize("package", GRADING)
def test_grading_imports_no_torch_nemo_or_server_code(package):
    siblings, libraries = imports(package)
    found = {**siblings, **libraries}
    assert not [f"{name} ({', '.join(found[name])})" for name in sorted(found)
                if name in NOT_FOR_GRADING]
    listed_siblings, listed_modules = allowed(package)
    assert not (listed_siblings | listed_modules) & NOT_FOR_GRADING  # nor may its row


def test_a_forbidden_import_anywhere_in_a_module_is_found():
    """What the checks see of imports hidden in a function or written relative to the
    package, in a module of ``reward`` (never written: only its path is used)."""
    source = ("from . import voting\n"
              "from ..server import client\n"
              "def f():\n"
              "    import torch.nn\n"
              "    from nemo_coreward.rl.losses import kl_penalty\n")
    found = imports_in(source, PACKAGE / "reward" / "x.py")
    assert found == [("nemo_coreward.reward.voting", 1), ("nemo_coreward.server", 2),
                     ("torch.nn", 4), ("nemo_coreward.rl.losses", 5)]
    siblings, modules = allowed("reward")
    assert "server" not in siblings and "rl" not in siblings and "torch" not in modules
