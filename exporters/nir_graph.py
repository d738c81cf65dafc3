"""The one check of a NIR graph and its topological order, plus the graph-level facts (step dt,
a node's per-sample shape) every consumer reads: the simulator, the ONNX and Lava exporters and
the NIR importer. Standard library, numpy and nir duck typing only (it runs in the Lava
interpreter); slamp_deploy's ExportError is used when importable, else a local stand-in."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

try:  # the Lava interpreter does not have slamp_deploy installed
    from slamp_deploy.errors import ExportError
except ImportError:  # pragma: no cover - exercised in the Lava interpreter only

    class ExportError(Exception):  # type: ignore[no-redef]
        """Stand-in for slamp_deploy.errors.ExportError outside the main environment."""


__all__ = ["DEFAULT_DT", "ExportError", "check_nir_graph", "graph_dt", "kahn", "node_shape",
           "recorded_dt"]

DEFAULT_DT = 1e-4


def kahn(names: list[str], preds: dict[str, list[str]], succs: dict[str, list[str]]
         ) -> list[str]:
    """Kahn's algorithm from every node without sources; ties broken by node and edge order so
    the result is deterministic. Nodes on or after a cycle are left out."""
    indeg = {n: len(preds[n]) for n in names}
    ready = [n for n in names if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succs[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order


def _check_types(nodes: dict[str, Any], supported: Collection[str]) -> None:
    for name, node in nodes.items():
        tname = type(node).__name__
        if tname not in supported:
            raise ExportError(
                f"NIR node {name!r} has type {tname}, which slamp-deploy cannot simulate or "
                f"export; supported: {', '.join(supported)}"
            )


def check_nir_graph(graph: Any, supported: Collection[str] | None = None
                    ) -> tuple[list[str], dict[str, list[str]]]:
    """Node names from the Input node to the Output node(s), each after all its sources, and
    each node's sources in edge order (NIR sums the edges into a node).

    ``supported``: the NIR class names the caller handles (checked first), or None to check
    the structure only. Raises ExportError naming the node for an unsupported type, an edge to
    an unknown node, not exactly one Input node, a cycle, or a node the input does not reach.
    """
    nodes = graph.nodes
    if supported is not None:
        _check_types(nodes, supported)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in nodes:
                raise ExportError(f"NIR edge ({src!r}, {dst!r}) names {end!r}, which is no node")
        preds[dst].append(src)
        succs[src].append(dst)
    inputs = [n for n, node in nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise ExportError(f"NIR graph must have exactly one Input node, found {len(inputs)}")
    order = kahn(list(nodes), preds, succs)
    if len(order) != len(nodes):
        stuck = [n for n in nodes if n not in order]
        raise ExportError(f"node {stuck[0]!r} is part of a cycle, or after one; slamp-deploy "
                          "reads feed-forward NIR graphs only (no recurrent graphs)")
    orphans = [n for n in order if not preds[n] and n != inputs[0]]
    if orphans:
        raise ExportError(f"node(s) {', '.join(map(repr, orphans))} are not reached from the "
                          "input; connect them or remove them")
    return order, preds


def recorded_dt(graph: Any) -> float | None:
    """The step the graph's metadata ``slamp.dt`` records (slamp-deploy writes it), or None.

    Raises ExportError for a value that is no positive finite number of seconds.
    """
    meta = getattr(graph, "metadata", None) or {}
    if "slamp.dt" not in meta:
        return None
    raw = meta["slamp.dt"]
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, np.ndarray | np.generic):
        raw = raw.tolist()
    try:
        dt = float(np.asarray(raw, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise ExportError(f"graph metadata slamp.dt = {raw!r} is not a number of seconds"
                          ) from None
    if not (np.isfinite(dt) and dt > 0):
        raise ExportError(f"graph metadata slamp.dt = {raw!r}: the step must be a positive "
                          f"number of seconds")
    return dt


def graph_dt(graph: Any) -> float:
    """The simulation step: graph metadata ``slamp.dt``, else 1e-4 (snnTorch's convention)."""
    dt = recorded_dt(graph)
    return DEFAULT_DT if dt is None else dt


def node_shape(node: Any, port: str = "output") -> tuple[int, ...]:
    """Per-sample shape of a node's input or output, from its (inferred) NIR type."""
    types = node.output_type if port == "output" else node.input_type
    arr = types.get(port) if isinstance(types, dict) else None
    if arr is None:
        raise ExportError(
            f"NIR node of type {type(node).__name__} has no {port} type: call graph.infer_types()"
        )
    return tuple(int(v) for v in np.asarray(arr).reshape(-1))
