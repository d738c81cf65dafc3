"""snnTorch model (as a SpikingGraph) to NIR (the NIR importer is ``model/nir_import.py``).

The toolkit writes NIR itself: snnTorch 1.0.0's ``export_to_nir`` fails with nir 1.0.8 on
batch dimensions, scalar beta and conv nets, and drops what NIR cannot say. Conventions:

* nodes ``input``/``output`` plus one node per layer, named by the module's qualified name;
  feed-forward edges; a residual add has no node of its own: its reader gets an edge from each
  of its inputs (NIR sums the edges into a node); types inferred before writing.
* Linear -> ``Affine`` (``Linear`` without bias); Conv1d/Conv2d -> ``Conv1d``/``Conv2d`` with
  every attribute; BatchNorm folded into the preceding synaptic weights and bias (pruned
  weights stay exactly zero); Flatten -> ``Flatten`` over the per-sample dims, written with
  negative dims (``-len(shape)`` to ``-1``) so importers that apply them to batched tensors
  (snnTorch, norse) flatten the same dims; AvgPool2d -> ``SumPool2d`` with 1/area folded into
  the weights of the one synaptic node that reads it, where that is bitwise exact (norse's,
  sinabs' and spyx's importers know no AvgPool2d; snnTorch's reads both), else ``AvgPool2d``;
  Dropout dropped (identity at inference).
* Leaky -> ``LIF`` with snnTorch's dt = 1e-4: ``tau = dt / (1 - beta)``, ``r = tau / dt``,
  ``v_leak = 0``, ``v_reset = 0``, every parameter broadcast to the per-neuron shape (beta == 1
  everywhere -> ``IF``); Synaptic -> ``CubaLIF`` with ``w_in = tau_syn / dt``. tau is computed
  in float64 from the float32 beta so ``1 - dt / tau`` gives beta back exactly in float32.
* Graph metadata: ``slamp.dt``, ``slamp.timesteps``, ``slamp.encoding``, ``slamp.readout``,
  ``slamp.r_convention``, ``slamp.exporter_version``, ``slamp.nir_version``,
  ``slamp.avgpool_as_sumpool`` (the pools so written). Neuron nodes: ``slamp.reset_mechanism``,
  ``slamp.reset_delay``. Synaptic nodes: ``slamp.kept``, ``slamp.total``, ``slamp.density``,
  and after such a pool ``slamp.weight_scale`` (1/area) and ``slamp.weight_scale_from``; the
  SumPool2d: ``slamp.avgpool_area_folded_into``.
* :func:`for_consumer` rewrites a graph for one consumer's importer (today norse: r = 1), the
  same NIR equations, recorded in ``slamp.form`` and ``slamp.r_convention``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from slamp_deploy.exporters import nir_sim, register_exporter
from slamp_deploy.exporters._atomic import write_atomically
from slamp_deploy.exporters.nir_graph import graph_dt
from slamp_deploy.exporters.nir_nodes import pair
from torch import nn

from slamp_deploy import __version__
from slamp_deploy.errors import ExportError
from slamp_deploy.model.graph import ADD, INPUT, NEURON_KINDS, Op, SpikingGraph, neuron_spec

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
    p = neuron_spec(op)
    shape = op.out_shape
    beta = _full(p.beta, shape)
    thr = _full(p.threshold, shape)
    zeros = np.zeros(shape)
    meta = {"slamp.reset_mechanism": p.reset_mechanism, "slamp.reset_delay": p.reset_delay}
    if p.alpha is not None:
        alpha = _full(p.alpha, shape)
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


def _shape_node(op: Op) -> nir.NIRNode | None:
    """The NIR node of a flatten/reshape, avgpool or dropout layer (None: dropped)."""
    if op.kind in ("flatten", "reshape"):
        if len(op.out_shape) != 1:
            raise ExportError(f"layer '{op.name}': reshape to {op.out_shape} is not a "
                              f"flatten; NIR's Flatten only flattens the per-sample dims")
        # negative dims: NIR's shapes have no batch dimension, but snnTorch's and norse's
        # importers pass start_dim to torch.nn.Flatten on batched tensors; -len(shape)..-1
        # means the same per-sample dims to both (0 would flatten the batch in theirs)
        return nir.Flatten(input_type={"input": np.array(op.in_shape)},
                           start_dim=-len(op.in_shape), end_dim=-1)
    if op.kind == "avgpool":
        m = op.module
        if not isinstance(m, nn.AvgPool2d):
            raise ExportError(f"layer '{op.name}': {type(m).__name__} has no NIR node; "
                              f"NIR 1.0.8 has AvgPool2d and SumPool2d only")
        return nir.AvgPool2d(kernel_size=np.array(pair(m.kernel_size, 2)),
                             stride=np.array(pair(m.stride, 2)),
                             padding=np.array(pair(m.padding, 2)))
    if op.kind == "dropout":
        return None
    raise ExportError(f"layer '{op.name}' ({type(op.module).__name__}) cannot be "
                      f"expressed in NIR 1.0.8; use AvgPool2d instead of max pooling")


class _Writer:
    """to_nir's walk over the ops: the nodes and edges so far, and which NIR nodes sum to each
    op's value (NIR sums the edges into a node, so a residual add is the edges of both of its
    inputs; no node of its own)."""

    def __init__(self, graph: SpikingGraph) -> None:
        self.graph = graph
        self.ops = list(graph.ops)
        self.nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array(graph.input_shape))}
        self.edges: list[tuple[str, str]] = []
        self.ends: dict[int, list[str]] = {INPUT: ["input"]}
        self.folded: set[int] = set()

    def _batchnorm_after(self, i: int) -> nn.Module | None:
        nxt = self.graph.consumers[i]
        if len(nxt) == 1 and self.ops[nxt[0]].kind == "batchnorm":
            self.folded.add(nxt[0])
            return self.ops[nxt[0]].module
        return None

    def _node(self, i: int, op: Op, srcs: list[int]) -> nir.NIRNode | None:
        if op.kind in ("linear", "conv1d", "conv2d"):
            return _synaptic_node(op, self._batchnorm_after(i))
        if op.kind in NEURON_KINDS:
            return _neuron_node(op)
        if op.kind == "batchnorm":
            j = srcs[0]
            before = f"'{self.ops[j].name}' ({self.ops[j].kind})" if j != INPUT else "the input"
            raise ExportError(f"layer '{op.name}': BatchNorm is folded into the Linear/Conv "
                              f"right before it (its only reader); here it follows {before}, "
                              f"which NIR cannot express")
        return _shape_node(op)

    def add(self, i: int, op: Op) -> None:
        srcs = self.graph.sources(i)
        if i in self.folded:  # a BatchNorm folded into the synaptic node before it
            self.ends[i] = self.ends[srcs[0]]
            return
        if op.kind == ADD:
            self.ends[i] = self.ends[srcs[0]] + self.ends[srcs[1]]
            if len(set(self.ends[i])) != len(self.ends[i]):
                raise ExportError(f"'{op.name}' adds a node's output to itself; NIR sums "
                                  f"distinct edges only (scale the weights by 2 instead)")
            return
        node = self._node(i, op, srcs)
        if node is None:
            self.ends[i] = self.ends[srcs[0]]
            return
        self.nodes[op.name] = node
        self.edges.extend((src, op.name) for src in self.ends[srcs[0]])
        self.ends[i] = [op.name]


_SYNAPTIC = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)


def _pool_reader(name: str, nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
                 ) -> str | None:
    """The synaptic node that alone reads pool ``name``'s output (through Flatten nodes that
    have one reader each) and reads nothing else, or None."""
    cur = name
    while True:
        outs = [d for s, d in edges if s == cur]
        if len(outs) != 1 or sum(1 for _, d in edges if d == outs[0]) != 1:
            return None
        cur = outs[0]
        if isinstance(nodes[cur], _SYNAPTIC):
            return cur
        if not isinstance(nodes[cur], nir.Flatten):
            return None


def _sum_pools(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]) -> list[str]:
    """Write each AvgPool2d as a SumPool2d whose 1/area is folded into the weights of the one
    synaptic node that reads it, where that is bitwise exact; returns the pools rewritten.

    Why: norse 1.1.0's, sinabs 3.1.3's and spyx 1.0.0's importers know SumPool2d only (snnTorch
    1.0.0's reads both, via nirtorch's default map), so an AvgPool2d stops their conv graphs.
    Exact: the area must be a power of two (scaling by it commutes with float rounding, so
    sum * (w / area) == (sum / area) * w bit for bit), every scaled weight must scale back
    (no underflow), and the padding zero (norse's and nirtorch's sum pools ignore padding).
    """
    done = []
    for name in [n for n, node in nodes.items() if isinstance(node, nir.AvgPool2d)]:
        pool = nodes[name]
        k = np.asarray(pool.kernel_size).reshape(-1)
        area = int(np.prod(k))
        reader = _pool_reader(name, nodes, edges)
        if reader is None or area & (area - 1) or np.any(np.asarray(pool.padding) != 0):
            continue
        syn = nodes[reader]
        w = np.asarray(syn.weight)
        scaled = (w / w.dtype.type(area)).astype(w.dtype)
        if not np.array_equal(scaled * w.dtype.type(area), w):
            continue
        syn.weight = scaled
        syn.metadata = dict(syn.metadata, **{"slamp.weight_scale": 1.0 / area,
                                             "slamp.weight_scale_from": name})
        nodes[name] = nir.SumPool2d(kernel_size=pool.kernel_size, stride=pool.stride,
                                    padding=pool.padding,
                                    metadata={"slamp.avgpool_area_folded_into": reader})
        done.append(name)
    return done


def to_nir(graph: SpikingGraph, *, timesteps: int, encoding: str, readout: str) -> nir.NIRGraph:
    """The NIR graph of a (pruned) SpikingGraph, following the module's conventions.

    Raises:
        ExportError: a layer NIR cannot express, named with what to use instead.
    """
    w = _Writer(graph)
    for i, op in enumerate(w.ops):
        w.add(i, op)
    w.nodes["output"] = nir.Output(np.array(graph.output_op.out_shape))
    w.edges.extend((src, "output") for src in w.ends[len(w.ops) - 1])
    pools = _sum_pools(w.nodes, w.edges)
    g = nir.NIRGraph(nodes=w.nodes, edges=w.edges, metadata={
        "slamp.dt": DT, "slamp.timesteps": int(timesteps), "slamp.encoding": encoding,
        "slamp.readout": readout, "slamp.r_convention": R_CONVENTION,
        "slamp.exporter_version": __version__, "slamp.nir_version": nir.version,
        **({"slamp.avgpool_as_sumpool": ", ".join(pools)} if pools else {})})
    g.infer_types()
    return g


def _scale_rows(name: str, syn: nir.NIRNode, scale: np.ndarray) -> None:
    """Multiply synaptic node ``syn``'s output neuron i (row or channel i) by ``scale[i]``."""
    w = np.asarray(syn.weight)
    if isinstance(syn, (nir.Conv1d, nir.Conv2d)):
        per = scale.reshape(scale.shape[0], -1)
        if not np.all(per == per[:, :1]):
            raise ExportError(f"NIR node {name!r}: its neurons' time constants vary within a "
                              f"channel, so r = 1 cannot be folded into the shared conv weights")
        scale = per[:, 0]
    s = scale.reshape(-1, *([1] * (w.ndim - 1)))
    syn.weight = (w.astype(np.float64) * s).astype(w.dtype)
    if getattr(syn, "bias", None) is not None:
        b = np.asarray(syn.bias)
        syn.bias = (b.astype(np.float64) * scale.reshape(-1)).astype(b.dtype)


def _unit_r(graph: nir.NIRGraph) -> None:
    """Each LIF's input gain r*dt/tau written as r = 1 with the rest (r itself, tau/dt in our
    files) folded into the weights of the synaptic nodes that feed it."""
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.LIF):
            continue
        for src in [s for s, d in graph.edges if d == name]:
            syn = graph.nodes[src]
            if not isinstance(syn, _SYNAPTIC) or [d for s, d in graph.edges if s == src] \
                    != [name]:
                raise ExportError(f"NIR node {name!r}: r = 1 needs every input of the neuron "
                                  f"to come from a synaptic node of its own; {src!r} is a "
                                  f"{type(syn).__name__}")
            _scale_rows(name, syn, np.asarray(node.r, dtype=np.float64))
        node.r = np.ones_like(np.asarray(node.r))


#: consumer -> (what the variant changes, the rewrite); see :func:`for_consumer`
CONSUMER_FORMS: dict[str, tuple[str, Any]] = {
    "norse": ("r = 1 on every LIF, its input gain tau/dt folded into the weights before it "
              "(norse 1.1.0's from_nir ignores r: norse/torch/utils/import_nir.py:120-130)",
              _unit_r),
}


def for_consumer(graph: nir.NIRGraph, consumer: str) -> nir.NIRGraph:
    """A copy of ``graph`` (as :func:`to_nir` writes it) in the form ``consumer``'s importer
    reads as NIR says: the same NIR equations, other parameters (``CONSUMER_FORMS``), recorded
    in the graph metadata ``slamp.r_convention`` and ``slamp.form``. Not bitwise our default:
    the gain moves between the neuron and the weights, so float rounding can differ.

    Raises:
        ExportError: an unknown consumer, or a graph the form cannot express (named node).
    """
    if consumer not in CONSUMER_FORMS:
        raise ExportError(f"no NIR form for {consumer!r}; known: "
                          f"{', '.join(CONSUMER_FORMS)} (every other reader takes the default)")
    what, rewrite = CONSUMER_FORMS[consumer]
    g = _copy(graph)
    rewrite(g)
    g.metadata = dict(g.metadata, **{"slamp.form": f"{consumer}: {what}",
                                     "slamp.r_convention": f"r = 1 ({consumer})"})
    return g


def _copy(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A deep copy through the file format (what a reader of the file would get)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.nir"
        nir.write(str(p), graph)
        return nir.read(str(p))


def write_nir(graph: nir.NIRGraph, path: str | Path) -> Path:
    """``nir.write`` to a temporary file beside ``path``, then an atomic rename."""
    return write_atomically(path, lambda tmp: nir.write(tmp, graph))


def nir_bytes(graph: nir.NIRGraph) -> bytes:
    """The NIR file's content (for outputs written together into a folder)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.nir"
        nir.write(str(p), graph)
        return p.read_bytes()


@register_exporter("nir")
class NirExporter:
    """"nir": the NIR file, verified by reading it back into the numpy reference simulator."""

    name = "nir"
    filename = "model.nir"
    # the export check simulates the file in float64 and in float32 (verify._check_nir)
    runtime = "slamp_deploy.exporters.nir_sim (numpy, float64 and float32)"

    def unavailable(self) -> str | None:
        return None

    def export(self, graph: nir.NIRGraph, workdir: Path, *, timesteps: int) -> Path:
        return write_nir(graph, Path(workdir) / self.filename)

    def run(self, path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        return nir_sim.simulate(nir.read(str(path)), x)

    def describe(self, path: Path) -> dict[str, Any]:
        """The facts the report gives about the written file."""
        return graph_facts(nir.read(str(path)))


@register_exporter("nir-norse")
class NorseNirExporter(NirExporter):
    """"nir-norse" (``--nir-for norse``): ``model.norse.nir``, the graph in the form norse's
    ``from_nir`` reads exactly (:func:`for_consumer`), verified in the same simulator."""

    name = "nir-norse"
    filename = "model.norse.nir"
    runtime = "slamp_deploy.exporters.nir_sim (numpy, float32)"

    def export(self, graph: nir.NIRGraph, workdir: Path, *, timesteps: int) -> Path:
        return write_nir(for_consumer(graph, "norse"), Path(workdir) / self.filename)


def graph_facts(graph: nir.NIRGraph) -> dict[str, Any]:
    """The NIR version, step dt and node count of a graph, as the report gives them."""
    return {"nir_version": nir.version, "dt": graph_dt(graph), "nodes": len(graph.nodes)}
