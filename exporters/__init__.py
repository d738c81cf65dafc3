"""The exporters of a NIR graph and their registry: each format (NIR, ONNX, a simulator such as
Lava) is one :class:`Exporter`, registered by name with :func:`register_exporter`, found with
:func:`get_exporter` and listed by :func:`available_exporters`. ``slamp_deploy.verify`` runs the
exporters a target asks for through this one interface. The built-in exporters register when
their modules are imported, which :func:`get_exporter` does on first use, so importing this
package stays cheap (and torch-free)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

__all__ = ["Exporter", "available_exporters", "check_known", "get_exporter", "register_exporter"]

# name -> module that registers it; a new built-in exporter adds its line here
_BUILTIN = {"nir": "nir_export", "nir-norse": "nir_export", "onnx": "onnx_export",
            "lava": "lava_export"}
_REGISTRY: dict[str, Callable[..., Exporter]] = {}


@runtime_checkable
class Exporter(Protocol):
    """One export format, verified by running what it wrote on a batch of inputs.

    ``name`` keys the report's export section; ``filename`` is the file it adds to the run's
    outputs (None for a simulator that writes nothing of its own).
    """

    name: str
    filename: str | None
    runtime: str  # what runs the written file, as the report names it

    def describe(self, path: Path) -> Mapping[str, Any]:
        """Facts the report gives about the written file (``{}`` where there are none)."""
        ...

    def unavailable(self) -> str | None:
        """None when the exporter can run here, else how to enable it."""
        ...

    def export(self, graph: Any, workdir: Path, *, timesteps: int) -> Path:
        """Write ``graph`` (a nir.NIRGraph) into ``workdir``; the path of what was written."""
        ...

    def run(self, path: Path, x: np.ndarray) -> Mapping[str, np.ndarray]:
        """Run the written file on ``x`` [T, N, *input_shape]: spikes per neuron node
        [T, N, *shape] (and states as ``"<node>.mem"`` where the runtime has them)."""
        ...


E = TypeVar("E", bound=Callable[..., Exporter])


def register_exporter(name: str) -> Callable[[E], E]:
    """Class decorator: register ``cls`` (called with the exporter's options) under ``name``."""

    def deco(cls: E) -> E:
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _REGISTRY:
            importlib.import_module(f"{__name__}.{module}")


def available_exporters() -> tuple[str, ...]:
    """The registered exporter names, built-in ones first in their report order."""
    _load_builtins()
    return (*_BUILTIN, *(n for n in _REGISTRY if n not in _BUILTIN))


def check_known(names: Sequence[str]) -> None:
    """Raise ExportError naming the first of ``names`` that is not a registered exporter."""
    known = available_exporters()
    unknown = [n for n in names if n not in known]
    if unknown:
        from slamp_deploy.errors import ExportError

        raise ExportError(f"exporter {unknown[0]!r} is unknown; known exporters: "
                          f"{', '.join(known)}")


def get_exporter(name: str, **options: Any) -> Exporter:
    """The exporter registered as ``name``, made with ``options`` (e.g. Lava's mode)."""
    check_known((name,))
    return _REGISTRY[name](**options)
