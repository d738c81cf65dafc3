"""NIR file to a runnable snnTorch model (``--model graph.nir``): :func:`from_nir` and
:class:`NIRNetwork`, the step module of a feed-forward NIR graph with branches.

The graph is checked and ordered by ``exporters.nir_graph.check_nir_graph`` (the one NIR graph
check, a leaf module of numpy and nir only), whose ExportError becomes a ModelError naming the
file. Input gains other than snnTorch's r = tau/dt are folded into the synaptic weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from slamp_deploy.errors import ExportError, ModelError
from slamp_deploy.exporters.nir_graph import check_nir_graph, graph_dt

__all__ = ["NIRNetwork", "from_nir", "nir_order"]


def nir_order(graph: nir.NIRGraph, where: str) -> tuple[list[str], dict[str, list[str]]]:
    """``check_nir_graph``'s order and sources, its refusals as ModelError prefixed ``where``."""
    try:
        return check_nir_graph(graph)
    except ExportError as e:
        raise ModelError(f"{where}: {e}") from e


class NIRNetwork(nn.Module):
    """A feed-forward NIR graph with branches, as one snnTorch step module.

    ``forward`` runs one time step: every node reads the sum of its sources (NIR's rule for
    several edges into one node), in topological order; the output is the Output node's input.
    Node names keep NIR's spelling in :attr:`node_names`; submodules are named ``n0, n1, ...``
    (NIR names may contain dots, which module names cannot).
    """

    def __init__(self, order: list[str], preds: dict[str, list[str]],
                 modules: dict[str, nn.Module | None], output: str) -> None:
        super().__init__()
        self.node_names = [n for n in order if modules.get(n) is not None]
        self.nodes = nn.ModuleDict({f"n{k}": modules[n] for k, n in enumerate(self.node_names)})
        key = {n: f"n{k}" for k, n in enumerate(self.node_names)}
        # (module key or None for a pass-through node, source names) per node in order
        self._plan = [(n, key.get(n), list(preds[n])) for n in order[1:]]
        self._input, self._output = order[0], output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals: dict[str, torch.Tensor] = {self._input: x}
        for name, key, srcs in self._plan:
            h = vals[srcs[0]]
            for s in srcs[1:]:
                h = h + vals[s]
            if key is not None:
                out = self.nodes[key](h)
                h = out[0] if isinstance(out, tuple) else out
            vals[name] = h
        return vals[self._output]


def _param(a: np.ndarray) -> torch.Tensor | float:
    a = np.asarray(a, dtype=np.float64)
    if a.size and np.all(a == a.flat[0]):
        return float(np.float32(a.flat[0]))
    return torch.tensor(a, dtype=torch.float32)


def from_nir(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build an snnTorch model from a NIR file, with the graph's metadata.

    A chain becomes an ``nn.Sequential``; a graph with branches (several edges into a node, as
    residual connections are written) a :class:`NIRNetwork`. Input gains ``r * dt / tau`` other
    than 1 (other frameworks' conventions) are folded into the synaptic weights and biases that
    feed the node, so the dynamics are the NIR graph's.

    Raises:
        ModelError: unreadable file, unsupported node type, cycles (named).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"--model {p}: NIR file not found")
    try:
        graph = nir.read(str(p))
    except Exception as e:
        raise ModelError(f"--model {p}: cannot read as NIR ({type(e).__name__}: {e})") from e
    meta = dict(graph.metadata or {})
    dt = graph_dt(graph)
    order, preds = nir_order(graph, str(p))
    modules: dict[str, nn.Module | None] = {}
    for name in order:
        upstream = _upstream_synaptic(name, preds, graph, modules, str(p))
        modules[name] = _module_from_node(name, graph.nodes[name], dt, str(p), upstream)
    names = [n for n in order if modules[n] is not None]
    outputs = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    chain = all(len(preds[n]) <= 1 for n in order) and all(
        sum(a == n for a, _ in graph.edges) <= 1 for n in order)
    model: nn.Module
    if chain:
        model = nn.Sequential(*[modules[n] for n in names])  # type: ignore[misc]
    else:
        if len(outputs) != 1:
            raise ModelError(f"{p}: expected one Output node, found {len(outputs)}")
        model = NIRNetwork(order, preds, modules, outputs[0])
    meta["slamp.node_names"] = names
    return model, meta


def _upstream_synaptic(name: str, preds: dict[str, list[str]], graph: nir.NIRGraph,
                       modules: dict[str, nn.Module | None], where: str
                       ) -> list[tuple[str, nn.Module | None]]:
    """For each source path of ``name``: the nearest synaptic module upstream (through shape
    nodes), or (the node that stops the walk, None)."""
    out: list[tuple[str, nn.Module | None]] = []
    for src in preds[name]:
        cur = src
        while True:
            m = modules.get(cur)
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                out.append((cur, m))
                break
            if isinstance(m, (nn.Flatten, nn.AvgPool2d)) and len(preds[cur]) == 1:
                cur = preds[cur][0]
                continue
            out.append((cur, None))
            break
    return out


def _fold_gain(upstream: list[tuple[str, nn.Module | None]], gain: np.ndarray, name: str,
               where: str) -> None:
    if np.allclose(gain, 1.0, rtol=1e-6, atol=0):
        return
    if not upstream or any(m is None for _, m in upstream):
        stop = next((n for n, m in upstream if m is None), "the input")
        raise ModelError(f"{where}: node '{name}' scales its input by {gain.flat[0]:g} and its "
                         f"source '{stop}' is no synaptic layer that could absorb the gain")
    g = torch.tensor(np.asarray(gain, dtype=np.float64), dtype=torch.float32)
    for _, syn in upstream:
        assert isinstance(syn, (nn.Linear, nn.Conv1d, nn.Conv2d))
        if g.numel() > 1 and not torch.all(g == g.flatten()[0]):
            per_out = g.reshape(g.shape[0], -1)[:, 0]
            if not torch.all(g.reshape(g.shape[0], -1) == per_out[:, None]):
                raise ModelError(f"{where}: node '{name}' has an input gain that varies within "
                                 f"an output channel; it cannot be folded into the weights")
        else:
            per_out = torch.full((syn.weight.shape[0],), float(g.flatten()[0]))
        with torch.no_grad():
            syn.weight.mul_(per_out.view(-1, *([1] * (syn.weight.dim() - 1))))
            if syn.bias is not None:
                syn.bias.mul_(per_out)


def _reset(node: nir.NIRNode) -> str:
    return str((node.metadata or {}).get("slamp.reset_mechanism", "zero"))


def _module_from_node(name: str, node: nir.NIRNode, dt: float, where: str,
                      upstream: list[tuple[str, nn.Module | None]]) -> nn.Module | None:
    if isinstance(node, (nir.Input, nir.Output)):
        return None
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = torch.tensor(np.asarray(node.weight), dtype=torch.float32)
        has_bias = isinstance(node, nir.Affine)
        m = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            m.weight.copy_(w)
            if has_bias:
                m.bias.copy_(torch.tensor(np.asarray(node.bias), dtype=torch.float32))
        return m
    if isinstance(node, (nir.Conv2d, nir.Conv1d)):
        w = torch.tensor(np.asarray(node.weight), dtype=torch.float32)
        cls = nn.Conv2d if isinstance(node, nir.Conv2d) else nn.Conv1d
        pad = node.padding
        if isinstance(pad, str):
            raise ModelError(f"{where}: node '{name}' has padding {pad!r}; only explicit "
                             f"integer padding is read")
        m = cls(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                stride=_ints(node.stride), padding=_ints(pad), dilation=_ints(node.dilation),
                groups=int(node.groups), bias=True)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(torch.tensor(np.asarray(node.bias), dtype=torch.float32))
        return m
    if isinstance(node, nir.Flatten):
        return nn.Flatten()
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(_ints(node.kernel_size), _ints(node.stride), _ints(node.padding))
    if isinstance(node, nir.LIF):
        tau = np.asarray(node.tau, dtype=np.float64)
        if not np.allclose(node.v_leak, 0):
            raise ModelError(f"{where}: node '{name}' has v_leak != 0, which snnTorch's Leaky "
                             f"cannot express")
        _fold_gain(upstream, np.asarray(node.r, dtype=np.float64) * dt / tau, name, where)
        return snn.Leaky(beta=_param(1.0 - dt / tau), threshold=_param(node.v_threshold),
                         reset_mechanism=_reset(node), init_hidden=True)
    if isinstance(node, nir.IF):
        _fold_gain(upstream, np.asarray(node.r, dtype=np.float64), name, where)
        return snn.Leaky(beta=1.0, threshold=_param(node.v_threshold),
                         reset_mechanism=_reset(node), init_hidden=True)
    if isinstance(node, nir.CubaLIF):
        tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
        tau_mem = np.asarray(node.tau_mem, dtype=np.float64)
        if not np.allclose(node.v_leak, 0):
            raise ModelError(f"{where}: node '{name}' has v_leak != 0, which snnTorch's "
                             f"Synaptic cannot express")
        gain = (np.asarray(node.w_in, dtype=np.float64) * dt / tau_syn
                * np.asarray(node.r, dtype=np.float64) * dt / tau_mem)
        _fold_gain(upstream, gain, name, where)
        return snn.Synaptic(alpha=_param(1.0 - dt / tau_syn), beta=_param(1.0 - dt / tau_mem),
                            threshold=_param(node.v_threshold), reset_mechanism=_reset(node),
                            init_hidden=True)
    raise ModelError(f"{where}: node '{name}' has type {type(node).__name__}, which slamp-deploy "
                     f"does not read; supported: Affine, Linear, Conv1d, Conv2d, Flatten, "
                     f"AvgPool2d, LIF, IF, CubaLIF")


def _ints(v: Any) -> Any:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return tuple(int(x) for x in a) if a.size > 1 else int(a[0])
