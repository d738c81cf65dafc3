"""A stand-in for SynSense's closed ``samna`` (and ``samnagui``) package, for running the
vendors' pure-Python mapping code offline in ``.venv-interop``.

sinabs' ``backend.dynapcnn`` and rockpool's ``devices.xylo`` import ``samna`` at module level
(config classes, device handles, graph nodes) although the code the tests call (sinabs'
``DynapcnnNetwork``, ``DynapcnnLayer.memory_summary``, ``mapping.get_valid_mapping``,
``ConfigBuilder.get_constraints``; rockpool's graph-module conversion and ``mapper``) never
touches it. Every ``samna`` name resolves to an inert object, so any code path that really used
samna would compute nothing meaningful: the tests only read results the vendor computes in
Python. Not a test module: the probes import it before the vendor packages.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _Any:
    """Any attribute, call or base class: an inert placeholder."""

    def __init__(self, *a: object, **k: object) -> None:
        pass

    def __getattr__(self, name: str) -> _Any:
        return _Any()

    def __call__(self, *a: object, **k: object) -> _Any:
        return _Any()

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


class _Module(types.ModuleType):
    def __getattr__(self, name: str) -> _Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("samna", "samnagui"):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return _Module(spec.name)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        module.__path__ = []


def install() -> None:
    """Make ``import samna...`` resolve to the stand-in (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
