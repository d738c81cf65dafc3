"""NIR file to a runnable snnTorch model (``--model graph.nir``): :func:`read_nir` (typed, with
the assumptions made), :func:`from_nir` and :class:`NIRNetwork`, the step module of a
feed-forward NIR graph with branches.

The graph is checked and ordered by ``exporters.nir_graph.check_nir_graph`` (the one NIR graph
check), and every neuron's discrete-time parameters come from ``exporters.nir_nodes``
(``neuron_params``: the same maths the NIR simulator, the ONNX and the Lava exporters use; and
``check_discrete``: what has no forward-Euler form at the step). NIR carries no dt: it is the
file's ``slamp.dt`` (slamp-deploy writes it), else the caller's (``--nir-dt``), else assumed
1e-4 s with a warning. Input gains other than snnTorch's 1 (``r*dt/tau``, ``w_in``, ``Scale``)
and a LIF's leak ``(dt/tau)*v_leak`` are folded into the synaptic layer that feeds the node;
a ``SumPool2d`` becomes an ``AvgPool2d`` whose area is folded into the next synaptic layer.
What cannot be folded exactly is refused by node name (docs/nir-interop.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from slamp_deploy.errors import ExportError, ModelError, SlampWarning
from slamp_deploy.exporters import nir_nodes
from slamp_deploy.exporters.nir_graph import DEFAULT_DT, check_nir_graph, recorded_dt
from slamp_deploy.model.graph import reset_state

__all__ = ["DT_CONVENTIONS", "NIRNetwork", "NirRead", "ReadAssumption", "from_nir",
           "nir_order", "read_nir"]

#: the dt each producer's NIR exporter assumes, as measured by tests/interop (docs/nir-interop.md)
DT_CONVENTIONS = ("snnTorch 1.0.0 and the NIR paper's graphs use 1e-4 s, norse 1.1.0 and "
                  "rockpool 3.1.0 1e-3 s, sinabs 3.1.3 and spyx 1.0.0 one step (--nir-dt 1)")
#: an LI readout's threshold: it never spikes, its membrane is the output (--readout membrane)
NO_SPIKE = float(np.finfo(np.float32).max)
_SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d)
_SUPPORTED = ("Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Scale, "
              "Threshold, LIF, IF, CubaLIF, LI")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadAssumption:
    """One fact NIR does not carry that the reader needed: ``source`` is "file" (slamp-deploy
    metadata in the file), "given" (an option) or "assumed" (a default, with a warning)."""

    name: str
    value: str
    source: str
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NirRead:
    """A NIR file read as a model: the model, the graph metadata (plus ``slamp.node_names``),
    the assumptions made and the warnings raised (each also issued as a SlampWarning)."""

    model: nn.Module
    metadata: dict[str, Any]
    assumptions: tuple[ReadAssumption, ...]
    warnings: tuple[str, ...]


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


def _read_graph(p: Path, notes: list[str]) -> nir.NIRGraph:
    if not p.is_file():
        raise ModelError(f"--model {p}: NIR file not found")
    try:
        try:
            graph = nir.read(str(p))
        except ValueError as e:
            if "Type inference error" not in str(e):
                raise
            # norse and snnTorch write Input shapes with a batch dimension ([1, n]) that
            # nir's type check refuses; the reader's own shape check (one step on zeros)
            # still names a node whose shapes do not fit
            graph = nir.read(str(p), type_check=False)
            notes.append(f"{p}: nir's type check refuses the file "
                         f"({str(e).splitlines()[0]}); read without it")
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"--model {p}: cannot read as NIR ({type(e).__name__}: {msg})") from e
    if not isinstance(graph, nir.NIRGraph):
        raise ModelError(f"--model {p}: holds a single {type(graph).__name__} node, not a NIR "
                         f"graph")
    return graph


def _resolve_dt(graph: nir.NIRGraph, dt: float | None, where: str
                ) -> tuple[float, ReadAssumption, list[str]]:
    try:
        rec = recorded_dt(graph)
    except ExportError as e:
        raise ModelError(f"{where}: {e}") from e
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ModelError(f"--nir-dt {dt}: the step must be a positive number of seconds")
    if rec is not None:
        notes = [] if dt is None or dt == rec else [
            f"{where}: --nir-dt {dt:g} ignored: the file records slamp.dt = {rec:g} s"]
        return rec, ReadAssumption(name="dt", value=f"{rec:g} s", source="file",
                                   note="graph metadata slamp.dt"), notes
    if dt is not None:
        return dt, ReadAssumption(name="dt", value=f"{dt:g} s", source="given",
                                  note="--nir-dt"), []
    msg = (f"{where}: NIR carries no time step and the file records none; assumed dt = "
           f"{DEFAULT_DT:g} s (snnTorch's), so every time constant is read at that step. "
           f"Give the producer's with --nir-dt: {DT_CONVENTIONS}. Exporters that depart "
           f"from NIR's equations (norse writes dt*tau, spyx r = 1 or beta, snnTorch resets "
           f"CubaLIF a step late, rockpool decays exponentially): docs/nir-interop.md")
    return DEFAULT_DT, ReadAssumption(name="dt", value=f"{DEFAULT_DT:g} s", source="assumed",
                                      note="no slamp.dt in the file and no --nir-dt"), [msg]


def read_nir(path: str | Path, *, dt: float | None = None) -> NirRead:
    """Read a NIR file as an snnTorch model at step ``dt`` (used when the file records none).

    A chain becomes an ``nn.Sequential``; a graph with branches (several edges into a node, as
    residual connections are written) a :class:`NIRNetwork`.

    Raises:
        ModelError: unreadable file, unsupported node type, cycles, bad parameters (named).
    """
    p = Path(path)
    where = str(p)
    read_notes: list[str] = []
    graph = _read_graph(p, read_notes)
    step, dt_fact, notes = _resolve_dt(graph, dt, where)
    notes = read_notes + notes
    order, preds = nir_order(graph, where)
    b = _Builder(graph, order, preds, step, where)
    b.build()
    notes += b.notes
    model = b.model()
    meta = dict(graph.metadata or {})
    meta["slamp.node_names"] = [n for n in order if b.modules[n] is not None]
    facts = (dt_fact, b.reset_assumption())
    for msg in notes:
        warnings.warn(msg, SlampWarning, stacklevel=2)
    return NirRead(model=model, metadata=meta, assumptions=facts, warnings=tuple(notes))


def from_nir(path: str | Path, *, dt: float | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`read_nir`'s model and metadata (the metadata also lists the assumptions under
    ``slamp.read_assumptions``)."""
    r = read_nir(path, dt=dt)
    meta = dict(r.metadata)
    meta["slamp.read_assumptions"] = [
        {"name": a.name, "value": a.value, "source": a.source, "note": a.note}
        for a in r.assumptions]
    return r.model, meta


def _check_arrays(name: str, node: Any, where: str) -> None:
    """NaN/inf in any numeric field of a node, named."""
    for key in ("weight", "bias", "scale", "threshold", "tau", "tau_syn", "tau_mem", "r",
                "w_in", "v_threshold", "v_leak", "v_reset"):
        v = getattr(node, key, None)
        if v is None:
            continue
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelError(f"{where}: node '{name}': {key} is not numeric") from None
        if not np.all(np.isfinite(a)):
            raise ModelError(f"{where}: node '{name}': {key} has "
                             f"{int(np.sum(~np.isfinite(a)))} NaN/inf value(s)")


class _Builder:
    """The walk of from_nir over the ordered nodes: the torch module of each node (None for a
    pass-through), the gains still to fold into a downstream synaptic layer (a SumPool2d's
    area), and the warnings so far."""

    def __init__(self, graph: nir.NIRGraph, order: list[str], preds: dict[str, list[str]],
                 dt: float, where: str) -> None:
        self.graph, self.order, self.preds, self.dt, self.where = graph, order, preds, dt, where
        self.succs: dict[str, list[str]] = {n: [] for n in order}
        for src, dst in graph.edges:
            self.succs[src].append(dst)
        self.modules: dict[str, nn.Module | None] = {}
        self.pending: dict[str, float] = {}  # node -> gain its consumers' weights must take
        self.passthrough: set[str] = set()  # folded Scale nodes
        self.notes: list[str] = []
        self.delays: list[str] = []  # neurons whose reset timing comes from slamp metadata
        self.shapes: dict[str, tuple[int, ...]] = {}  # neuron -> its parameters' shape

    def err(self, name: str, msg: str) -> ModelError:
        return ModelError(f"{self.where}: node '{name}': {msg}")

    def build(self) -> None:
        for name in self.order:
            node = self.graph.nodes[name]
            _check_arrays(name, node, self.where)
            kind = nir_nodes.type_name(node)
            if kind not in ("Input", "Output") and kind not in _SUPPORTED.split(", "):
                raise ModelError(f"{self.where}: node '{name}' has type {kind}, which "
                                 f"slamp-deploy does not read; supported: {_SUPPORTED}")
            gain = self._incoming_pending(name, kind)
            self.modules[name] = self._module(name, node, kind)
            if gain != 1.0:
                self._apply_pending(name, kind, gain)
        self._dry_run()

    def model(self) -> nn.Module:
        names = [n for n in self.order if self.modules[n] is not None]
        outputs = [n for n in self.order if isinstance(self.graph.nodes[n], nir.Output)]
        chain = all(len(self.preds[n]) <= 1 for n in self.order) and all(
            len(self.succs[n]) <= 1 for n in self.order)
        if chain:
            return nn.Sequential(*[self.modules[n] for n in names])  # type: ignore[misc]
        if len(outputs) != 1:
            raise ModelError(f"{self.where}: expected one Output node, found {len(outputs)}")
        return NIRNetwork(self.order, self.preds, self.modules, outputs[0])

    def reset_assumption(self) -> ReadAssumption:
        neurons = [n for n in self.order if nir_nodes.is_neuron(self.graph.nodes[n])
                   and nir_nodes.type_name(self.graph.nodes[n]) != "LI"]
        if neurons and len(self.delays) == len(neurons):
            return ReadAssumption(name="reset", value="as recorded per node", source="file",
                                  note="node metadata slamp.reset_mechanism/slamp.reset_delay")
        return ReadAssumption(
            name="reset", value="to v_reset right after the spike", source="assumed",
            note="NIR's equations (no slamp.reset_* metadata); a producer that resets by "
                 "subtraction or one step late (sinabs' default MembraneSubtract, snnTorch's "
                 "reset_delay) differs")

    # ------------------------------------------------------------------ gains and folds

    def _incoming_pending(self, name: str, kind: str) -> float:
        gains = {self.pending.get(s, 1.0) for s in self.preds[name]}
        if len(gains) > 1:
            raise self.err(name, "its sources carry different sum-pool areas; only one can "
                                 "fold into it")
        return gains.pop() if gains else 1.0

    def _apply_pending(self, name: str, kind: str, gain: float) -> None:
        m = self.modules[name]
        if isinstance(m, _SYNAPTIC):
            with torch.no_grad():
                m.weight.mul_(gain)  # the sum pool's area: weights only, not the bias
        elif kind in ("Flatten", "AvgPool2d", "SumPool2d", "Scale"):
            self.pending[name] = self.pending.get(name, 1.0) * gain
        else:
            raise self.err(name, f"a SumPool2d upstream feeds this {kind} directly; a sum "
                                 f"pool is read only where a synaptic layer follows it (its "
                                 f"area folds into the weights)")

    def _upstream(self, name: str) -> list[tuple[str, nn.Module | None]]:
        """For each source path of ``name``: the nearest synaptic module upstream (through
        shape nodes), or (the node that stops the walk, None)."""
        out: list[tuple[str, nn.Module | None]] = []
        for src in self.preds[name]:
            cur = src
            while True:
                m = self.modules.get(cur)
                if isinstance(m, _SYNAPTIC):
                    out.append((cur, m))
                    break
                if (isinstance(m, (nn.Flatten, nn.AvgPool2d)) or cur in self.passthrough) \
                        and len(self.preds[cur]) == 1:
                    cur = self.preds[cur][0]
                    continue
                out.append((cur, None))
                break
        return out

    def _fold_gain(self, name: str, gain: np.ndarray) -> None:
        """Multiply the weights and biases feeding ``name`` by its per-neuron input gain."""
        gain = np.asarray(gain, dtype=np.float64)
        if np.allclose(gain, 1.0, rtol=1e-6, atol=0):
            return
        ups = self._upstream(name)
        stop = next((n for n, m in ups if m is None), None)
        if not ups or stop is not None:
            raise self.err(name, f"scales its input by {gain.flat[0]:g} and its source "
                                 f"'{stop or 'input'}' is no synaptic layer that could absorb "
                                 f"the gain")
        for up, syn in ups:
            if len(self.succs[up]) > 1:
                raise self.err(name, f"its input gain {gain.flat[0]:g} would fold into '{up}', "
                                     f"which also feeds other nodes")
            assert isinstance(syn, _SYNAPTIC)
            per_out = self._per_channel(name, gain, syn.weight.shape[0], "input gain")
            with torch.no_grad():
                syn.weight.mul_(per_out.view(-1, *([1] * (syn.weight.dim() - 1))))
                if syn.bias is not None:
                    syn.bias.mul_(per_out)

    def _per_channel(self, name: str, v: np.ndarray, channels: int, what: str) -> torch.Tensor:
        flat = np.asarray(v, dtype=np.float64).reshape(-1)
        if flat.size == 1 or np.all(flat == flat[0]):
            return torch.full((channels,), float(flat[0]), dtype=torch.float32)
        rows = np.asarray(v, dtype=np.float64).reshape(channels, -1) \
            if flat.size % channels == 0 else None
        if rows is None or not np.all(rows == rows[:, :1]):
            raise self.err(name, f"its {what} varies within an output channel of the layer "
                                 f"before it; it cannot be folded into the weights")
        return torch.tensor(rows[:, 0], dtype=torch.float32)

    def _fold_leak(self, name: str, leak: np.ndarray) -> None:
        """Add the constant ``(dt/tau)*v_leak`` a LIF gets per step to the bias before it."""
        if not np.any(leak):
            return
        ups = self._upstream(name)
        if len(ups) != 1 or ups[0][1] is None:
            raise self.err(name, "has v_leak != 0 and is not fed by one synaptic layer whose "
                                 "bias could carry the leak")
        up, syn = ups[0]
        assert isinstance(syn, _SYNAPTIC)
        if len(self.succs[up]) > 1:
            raise self.err(name, f"its leak would fold into '{up}', which feeds other nodes")
        add = self._per_channel(name, leak, syn.weight.shape[0], "v_leak")
        with torch.no_grad():
            if syn.bias is None:
                syn.bias = nn.Parameter(torch.zeros(syn.weight.shape[0]))
            syn.bias.add_(add)

    # ------------------------------------------------------------------ nodes

    def _module(self, name: str, node: Any, kind: str) -> nn.Module | None:
        if kind in ("Input", "Output"):
            return None
        if kind in ("Affine", "Linear"):
            return self._dense(name, node, kind)
        if kind in ("Conv1d", "Conv2d"):
            return self._conv(name, node, kind)
        if kind == "Flatten":
            return nn.Flatten()
        if kind in ("AvgPool2d", "SumPool2d"):
            k, s, pad = (_ints(v) for v in _pool(node))
            if kind == "SumPool2d":  # sum = average * area (zero padding included)
                self.pending[name] = float(np.prod(nir_nodes.pair(node.kernel_size, 2)))
            return nn.AvgPool2d(k, s, pad)
        if kind == "Scale":
            self._fold_gain(name, np.asarray(node.scale, dtype=np.float64))
            self.passthrough.add(name)
            return None
        if kind == "Threshold" and name in self.passthrough:  # merged into the LI before it
            return None
        if kind == "Threshold":  # z = H(x - theta): a memoryless neuron that never resets
            return snn.Leaky(beta=0.0, threshold=_param(node.threshold),
                             reset_mechanism="none", init_hidden=True)
        return self._neuron(name, node, kind)

    def _dense(self, name: str, node: Any, kind: str) -> nn.Module:
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise self.err(name, f"{kind} weight must be 2-D, got shape {w.shape}")
        has_bias = kind == "Affine"
        if has_bias and np.asarray(node.bias).shape not in ((w.shape[0],), ()):
            raise self.err(name, f"bias has shape {np.asarray(node.bias).shape}, the weight "
                                 f"{w.shape} needs ({w.shape[0]},)")
        m = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            m.weight.copy_(torch.tensor(w, dtype=torch.float32))
            if has_bias:
                m.bias.copy_(torch.tensor(np.asarray(node.bias), dtype=torch.float32))
        return m

    def _conv(self, name: str, node: Any, kind: str) -> nn.Module:
        w = np.asarray(node.weight)
        nd = 2 if kind == "Conv2d" else 1
        if w.ndim != nd + 2:
            raise self.err(name, f"{kind} weight must be {nd + 2}-D, got shape {w.shape}")
        pad = node.padding
        if isinstance(pad, (str, bytes)) or (isinstance(pad, np.ndarray)
                                             and pad.dtype.kind in "SUO"):
            raise self.err(name, f"has padding {pad!r}; only explicit integer padding is read")
        bias = np.zeros(w.shape[0]) if node.bias is None else np.asarray(node.bias)
        if bias.shape not in ((w.shape[0],), ()):
            raise self.err(name, f"bias has shape {bias.shape}, the weight {w.shape} needs "
                                 f"({w.shape[0]},)")
        cls = nn.Conv2d if kind == "Conv2d" else nn.Conv1d
        try:
            m = cls(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                    stride=_ints(node.stride), padding=_ints(pad), dilation=_ints(node.dilation),
                    groups=int(node.groups), bias=True)
        except (ValueError, TypeError) as e:
            raise self.err(name, f"{kind} attributes: {e}") from e
        with torch.no_grad():
            m.weight.copy_(torch.tensor(w, dtype=torch.float32))
            m.bias.copy_(torch.tensor(np.broadcast_to(bias, (w.shape[0],)), dtype=torch.float32))
        return m

    def _neuron(self, name: str, node: Any, kind: str) -> nn.Module:
        try:
            self.notes += [f"{self.where}: {w}" for w in nir_nodes.check_discrete(name, node,
                                                                                 self.dt)]
            p = nir_nodes.neuron_params(name, node, self.dt)
        except ExportError as e:
            raise ModelError(f"{self.where}: {e}") from e
        except ValueError as e:  # parameters that do not broadcast to one shape
            raise self.err(name, f"parameters of different shapes ({e})") from e
        if p.has_v_reset:
            raise self.err(name, "v_reset != 0: snnTorch's neurons, which slamp-deploy prunes "
                                 "and retrains, reset to 0 only; shift the graph so v_reset = 0")
        self.shapes[name] = tuple(np.shape(p.beta))
        meta = node.metadata or {}
        if "slamp.reset_delay" in meta or "slamp.reset_mechanism" in meta:
            self.delays.append(name)
        if p.has_syn:
            if p.has_leak:
                raise self.err(name, "CubaLIF with v_leak != 0: the leak enters the membrane, "
                                     "not the synaptic current, so no synaptic bias can carry "
                                     "it; snnTorch's Synaptic has no leak term")
            assert p.gain_syn is not None and p.alpha is not None
            self._fold_gain(name, p.gain_syn * p.gain)  # syn scaled by g_mem is exact
            return snn.Synaptic(alpha=_param(p.alpha), beta=_param(p.beta),
                                threshold=_param(p.threshold),
                                reset_mechanism=p.reset_mechanism, reset_delay=p.reset_delay,
                                init_hidden=True)
        self._fold_gain(name, p.gain)
        self._fold_leak(name, p.leak)
        if kind == "LI":
            return self._readout(name, p)
        return snn.Leaky(beta=_param(p.beta), threshold=_param(p.threshold),
                         reset_mechanism=p.reset_mechanism, reset_delay=p.reset_delay,
                         init_hidden=True)

    def _readout(self, name: str, p: nir_nodes.NeuronParams) -> nn.Module:
        succ = self.succs[name]
        thr = self.graph.nodes[succ[0]] if len(succ) == 1 else None
        if thr is not None and nir_nodes.type_name(thr) == "Threshold" \
                and len(self.preds[succ[0]]) == 1:
            # LI then Threshold (spyx's PSU_LIF): a leaky neuron that never resets, exactly
            self.passthrough.add(succ[0])
            return snn.Leaky(beta=_param(p.beta), threshold=_param(thr.threshold),
                             reset_mechanism="none", init_hidden=True)
        others = [s for s in succ if not isinstance(self.graph.nodes[s], nir.Output)]
        if others:
            raise self.err(name, f"LI feeds '{others[0]}'; an LI is read only as the readout "
                                 f"(its membrane is the network's output)")
        self.notes.append(f"{self.where}: node '{name}' (LI) is read as a non-spiking readout: "
                          f"its membrane is the output, so use --readout membrane")
        return snn.Leaky(beta=_param(p.beta), threshold=NO_SPIKE, reset_mechanism="none",
                         init_hidden=True)

    def _dry_run(self) -> None:
        """One step on zeros through every node, naming the first whose shapes do not fit.

        An Input shape with leading 1s ([1, 6], [1, 1, 6]: norse, rockpool and snnTorch write
        a batch dimension there) is tried without them when it does not fit as written.
        """
        inp = self.graph.nodes[self.order[0]]
        try:
            shape = tuple(int(v) for v in np.asarray(inp.input_type["input"]).reshape(-1))
        except (KeyError, TypeError, ValueError):
            return
        bare = shape
        while len(bare) > 1 and bare[0] == 1:
            bare = bare[1:]
        try:
            self._step_zeros(shape)
        except ModelError:
            if bare == shape:
                raise
            for m in self.modules.values():
                if m is not None:
                    reset_state(m)
            self._step_zeros(bare)
            self.notes.append(f"{self.where}: the Input node's shape {list(shape)} has batch "
                              f"dimensions (not NIR's per-sample shape); read as {list(bare)}")
        for m in self.modules.values():
            if m is not None:
                reset_state(m)

    def _step_zeros(self, shape: tuple[int, ...]) -> None:
        vals: dict[str, torch.Tensor] = {self.order[0]: torch.zeros((1, *shape))}
        for name in self.order[1:]:
            h = None
            try:
                for s in self.preds[name]:
                    h = vals[s] if h is None else h + vals[s]
                want = self.shapes.get(name, ())
                if int(np.prod(want)) > 1 and want != tuple(h.shape[1:]):
                    raise self.err(name, f"has {want} neurons but receives "
                                         f"{tuple(h.shape[1:])}: shapes do not fit")
                m = self.modules[name]
                if m is not None:
                    out = m(h)
                    h = out[0] if isinstance(out, tuple) else out
            except RuntimeError as e:
                raise self.err(name, f"shapes do not fit ({str(e).splitlines()[0]})") from e
            vals[name] = h  # type: ignore[assignment]
        for m in self.modules.values():
            if m is not None:
                reset_state(m)


def _pool(node: Any) -> tuple[Any, Any, Any]:
    k = node.kernel_size
    s = node.stride if node.stride is not None else k
    pad = node.padding if node.padding is not None else 0
    return k, s, pad


def _ints(v: Any) -> Any:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return tuple(int(x) for x in a) if a.size > 1 else int(a[0])
