"""Machinery behind the test-only placeholders ``tensorrt_llm`` and ``tensorrt``.

NOT TensorRT or TensorRT-LLM: every submodule resolves to an empty placeholder module and
every attribute to a placeholder class that raises ``RuntimeError`` when instantiated or
called. See ``tensorrt_llm/__init__.py`` for why these exist.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

_MESSAGE = ("tensorrt_llm is a test-only placeholder here (tests/aligner/_placeholders); "
            "TensorRT-LLM generation needs the NGC NeMo container")


class _UnavailableMeta(type):
    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"{cls.__qualname__}: {_MESSAGE}")

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}")


def _placeholder(name: str) -> type:
    return _UnavailableMeta(name, (), {"__module__": name.rsplit(".", 1)[0]})


def _module_getattr(module_name: str):
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{module_name}.{name}")

    return __getattr__


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves every ``<package>.*`` submodule as an empty placeholder module."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(self.package + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name, __doc__)
        module.__path__ = []
        module.__getattr__ = _module_getattr(spec.name)
        module.IS_PLACEHOLDER = True
        return module

    def exec_module(self, module):
        return None


def install(package: str, namespace: dict) -> None:
    """Make ``package`` (a placeholder package) serve any attribute and submodule."""
    namespace["__getattr__"] = _module_getattr(package)
    namespace["IS_PLACEHOLDER"] = True
    sys.meta_path.append(_Finder(package))
