"""snnTorch model (as a SpikingGraph) to NIR, and NIR back to a runnable snnTorch model.

The toolkit writes NIR itself: snnTorch 1.0.0's ``export_to_nir`` fails with nir 1.0.8 on
batch dimensions, scalar beta and conv nets, and drops what NIR cannot say. Conventions:

* nodes ``input``/``output`` plus one node per layer, named by the module's qualified name;
  feed-forward edges; a residual add has no node of its own: its reader gets an edge from each
  of its inputs (NIR sums the edges into a node); types inferred before writing.
* Linear -> ``Affine`` (``Linear`` without bias); Conv1d/Conv2d -> ``Conv1d``/``Conv2d`` with
  every attribute; BatchNorm folded into the preceding synaptic weights and bias (pruned
  weights stay exactly zero); Flatten -> ``Flatten`` over the per-sample dims; AvgPool2d ->
  ``AvgPool2d``; Dropout dropped (identity at inference).
* Leaky -> ``LIF`` with snnTorch's dt = 1e-4: ``tau = dt / (1 - beta)``, ``r = tau / dt``,
  ``v_leak = 0``, ``v_reset = 0``, every parameter broadcast to the per-neuron shape (beta == 1
  everywhere -> ``IF``); Synaptic -> ``CubaLIF`` with ``w_in = tau_syn / dt``. tau is computed
  in float64 from the float32 beta so ``1 - dt / tau`` gives beta back exactly in float32.
* Graph metadata: ``slamp.dt``, ``slamp.timesteps``, ``slamp.encoding``, ``slamp.readout``,
  ``slamp.r_convention``, ``slamp.exporter_version``, ``slamp.nir_version``. Neuron nodes:
  ``slamp.reset_mechanism``, ``slamp.reset_delay``. Synaptic nodes: ``slamp.kept``,
  ``slamp.total``, ``slamp.density``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_sim
from slamp_deploy.exporters._atomic import write_atomically
from torch import nn

from slamp_deploy import __version__
from slamp_deploy.errors import ExportError, ModelError
from slamp_deploy.model.graph import ADD, INPUT, NEURON_KINDS, Op, SpikingGraph, neuron_params

DT = 1e-4
R_CONVENTION = "r = tau/dt (snnTorch)"


def _synapse_meta(w: np.ndarray) -> dict[str, Any]:
    kept = int(np.count_nonzero(w))
    return {"slamp.kept": kept, "slamp.total": int(w.size), "slamp.density": kept / w.size}


def _full(t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(t.detach().double().cpu().numpy(), shape).astype(np.float64)


def _bn_fold(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift of an eval-mode BatchNorm."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    return scale, shift


def _synaptic_node(op: Op, bn: nn.Module | None) -> nir.NIRNode:
    m = op.module
    assert m is not None
    w = m.weight.detach().double()
    b = m.bias.detach().double() if m.bias is not None else None
    if bn is not None:
        scale, shift = _bn_fold(bn)
        w = w * scale.double().view(-1, *([1] * (w.dim() - 1)))
        b = (b if b is not None else torch.zeros(w.shape[0], dtype=torch.float64)) \
            * scale.double() + shift.double()
    wn = w.float().cpu().numpy()
    meta = _synapse_meta(wn)
    if isinstance(m, nn.Linear):
        if b is None:
            return nir.Linear(weight=wn, metadata=meta)
        return nir.Affine(weight=wn, bias=b.float().cpu().numpy(), metadata=meta)
    bias = (b.float().cpu().numpy() if b is not None
            else np.zeros(m.out_channels, dtype=np.float32))
    if isinstance(m.padding, str):
        raise ExportError(f"layer '{op.name}': string padding {m.padding!r} is not exported; "
                          f"use explicit integer padding")
    if isinstance(m, nn.Conv2d):
        return nir.Conv2d(input_shape=tuple(op.in_shape[1:]), weight=wn, stride=m.stride,
                          padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias,
                          metadata=meta)
    return nir.Conv1d(input_shape=op.in_shape[1], weight=wn, stride=m.stride[0],
                      padding=m.padding[0], dilation=m.dilation[0], groups=m.groups, bias=bias,
                      metadata=meta)


def _neuron_node(op: Op) -> nir.NIRNode:
    p = neuron_params(op)
    shape = op.out_shape
    beta = _full(p["beta"], shape)  # type: ignore[arg-type]
    thr = _full(p["threshold"], shape)  # type: ignore[arg-type]
    zeros = np.zeros(shape)
    meta = {"slamp.reset_mechanism": p["reset_mechanism"], "slamp.reset_delay": p["reset_delay"]}
    if op.kind == "synaptic":
        alpha = _full(p["alpha"], shape)  # type: ignore[arg-type]
        if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
            raise ExportError(f"layer '{op.name}': Synaptic with alpha or beta = 1 has an "
                              f"infinite time constant, which CubaLIF cannot express")
        tau_syn, tau_mem = DT / (1.0 - alpha), DT / (1.0 - beta)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=zeros,
                           v_threshold=thr, v_reset=zeros, w_in=tau_syn / DT, metadata=meta)
    if np.all(beta == 1.0):
        return nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=zeros, metadata=meta)
    if np.any(beta >= 1.0):
        raise ExportError(f"layer '{op.name}': some neurons have beta = 1 and others not; NIR's "
                          f"LIF cannot mix infinite and finite time constants in one node")
    tau = DT / (1.0 - beta)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=zeros, v_threshold=thr, v_reset=zeros,
                   metadata=meta)


def to_nir(graph: SpikingGraph, *, timesteps: int, encoding: str, readout: str) -> nir.NIRGraph:
    """The NIR graph of a (pruned) SpikingGraph, following the module's conventions.

    Raises:
        ExportError: a layer NIR cannot express, named with what to use instead.
    """
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array(graph.input_shape))}
    edges: list[tuple[str, str]] = []
    ops = list(graph.ops)
    # op index -> the NIR nodes whose outputs sum to that op's value (NIR sums the edges into a
    # node, so a residual add is the edges of both of its inputs; no node of its own)
    ends: dict[int, list[str]] = {INPUT: ["input"]}
    folded: set[int] = set()
    for i, op in enumerate(ops):
        srcs = graph.sources(i)
        if i in folded:  # a BatchNorm folded into the synaptic node before it
            ends[i] = ends[srcs[0]]
            continue
        if op.kind == ADD:
            ends[i] = ends[srcs[0]] + ends[srcs[1]]
            if len(set(ends[i])) != len(ends[i]):
                raise ExportError(f"'{op.name}' adds a node's output to itself; NIR sums "
                                  f"distinct edges only (scale the weights by 2 instead)")
            continue
        node: nir.NIRNode | None
        if op.kind in ("linear", "conv1d", "conv2d"):
            bn = None
            nxt = graph.consumers[i]
            if len(nxt) == 1 and ops[nxt[0]].kind == "batchnorm":
                bn = ops[nxt[0]].module
                folded.add(nxt[0])
            node = _synaptic_node(op, bn)
        elif op.kind in NEURON_KINDS:
            node = _neuron_node(op)
        elif op.kind in ("flatten", "reshape"):
            if len(op.out_shape) != 1:
                raise ExportError(f"layer '{op.name}': reshape to {op.out_shape} is not a "
                                  f"flatten; NIR's Flatten only flattens the per-sample dims")
            node = nir.Flatten(input_type={"input": np.array(op.in_shape)}, start_dim=0,
                               end_dim=-1)
        elif op.kind == "avgpool":
            m = op.module
            if not isinstance(m, nn.AvgPool2d):
                raise ExportError(f"layer '{op.name}': {type(m).__name__} has no NIR node; "
                                  f"NIR 1.0.8 has AvgPool2d and SumPool2d only")
            node = nir.AvgPool2d(kernel_size=np.array(nn.modules.utils._pair(m.kernel_size)),
                                 stride=np.array(nn.modules.utils._pair(m.stride)),
                                 padding=np.array(nn.modules.utils._pair(m.padding)))
        elif op.kind == "dropout":
            node = None
        elif op.kind == "batchnorm":
            j = srcs[0]
            before = f"'{ops[j].name}' ({ops[j].kind})" if j != INPUT else "the input"
            raise ExportError(f"layer '{op.name}': BatchNorm is folded into the Linear/Conv "
                              f"right before it (its only reader); here it follows {before}, "
                              f"which NIR cannot express")
        else:
            raise ExportError(f"layer '{op.name}' ({type(op.module).__name__}) cannot be "
                              f"expressed in NIR 1.0.8; use AvgPool2d instead of max pooling")
        if node is None:
            ends[i] = ends[srcs[0]]
            continue
        nodes[op.name] = node
        edges.extend((src, op.name) for src in ends[srcs[0]])
        ends[i] = [op.name]
    nodes["output"] = nir.Output(np.array(graph.output_op.out_shape))
    edges.extend((src, "output") for src in ends[len(ops) - 1])
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={
        "slamp.dt": DT, "slamp.timesteps": int(timesteps), "slamp.encoding": encoding,
        "slamp.readout": readout, "slamp.r_convention": R_CONVENTION,
        "slamp.exporter_version": __version__, "slamp.nir_version": nir.version})
    g.infer_types()
    return g


def write_nir(graph: nir.NIRGraph, path: str | Path) -> Path:
    """``nir.write`` to a temporary file beside ``path``, then an atomic rename."""
    return write_atomically(path, lambda tmp: nir.write(tmp, graph))


def nir_bytes(graph: nir.NIRGraph) -> bytes:
    """The NIR file's content (for outputs written together into a folder)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.nir"
        nir.write(str(p), graph)
        return p.read_bytes()


# ---------------------------------------------------------------------------------------------
# NIR -> snnTorch: `--model graph.nir`
# ---------------------------------------------------------------------------------------------


def _order(graph: nir.NIRGraph, where: str) -> tuple[list[str], dict[str, list[str]]]:
    """Node names in a topological order from the input, and each node's sources (edge order).

    Refuses a cycle, several Input nodes and nodes the input does not reach, naming the node.
    """
    nodes = graph.nodes
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise ModelError(f"{where}: edge ({a!r}, {b!r}) names {end!r}, which is no node")
        preds[b].append(a)
        succ[a].append(b)
    inputs = [n for n, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ModelError(f"{where}: expected one Input node, found {len(inputs)}")
    order = nir_sim.kahn(list(nodes), preds, succ)
    if len(order) != len(nodes):
        stuck = [n for n in nodes if n not in order]
        raise ModelError(f"{where}: node '{stuck[0]}' is part of a cycle, or after one; "
                         f"slamp-deploy reads feed-forward graphs")
    orphans = [n for n in order if not preds[n] and n != inputs[0]]
    if orphans:
        raise ModelError(f"{where}: node(s) {', '.join(orphans)} are not reached from the "
                         f"input; connect them or remove them")
    return order, preds


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
    dt = float(meta.get("slamp.dt", DT))
    order, preds = _order(graph, str(p))
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
