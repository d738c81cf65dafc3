"""Stateful single-step ONNX export of a NIR graph, and a T-step onnxruntime runner.

The ONNX model computes ONE time step. Inputs: ``x_t`` [N, *input_shape] and every neuron
state, named after its NIR node: ``<node>.mem`` (all neurons) and ``<node>.syn`` (CubaLIF),
each [N, *neuron_shape]. Outputs: ``<node>.spikes`` for every neuron node (0/1 float32, layer
order; the last one is the readout layer) and the next states ``<node>.mem.next`` /
``<node>.syn.next``. N is a dynamic dimension. States start at zero (snnTorch's reset_mem); the
reset flag is recomputed from the previous membrane (mem > threshold), exactly as snnTorch
does, so no extra state is needed.

metadata_props: ``slamp.state_pairs`` (JSON {state input: state output}), ``slamp.timesteps``,
``slamp.spike_outputs`` (JSON list), ``slamp.dt``, ``slamp.readout`` / ``slamp.encoding``
(copied from the NIR graph when present) and ``slamp.exporter``.

Arithmetic follows exporters/nir_sim.py (snnTorch 1.0.0 order of operations) in float32: the
element-wise neuron updates are the same IEEE operations, so states agree with nir_sim to
within accumulation-order differences of Gemm/Conv (~1e-7 relative). Supported nodes: Affine,
Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, LIF, IF, CubaLIF (the emitters of
``nir_nodes.NODES``; the neuron update is ``neuron_step.step`` through :class:`_OnnxOps`);
anything else raises ExportError naming the node. Opset 17, IR version 8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from slamp_deploy.errors import ExportError

from . import neuron_step, nir_graph, nir_nodes, register_exporter
from ._atomic import write_atomically

__all__ = ["EXPORTER", "OPSET", "OnnxExport", "export_onnx", "run_onnx"]

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "x_t"
# metadata_props "slamp.exporter": readers key on this literal, keep it with the module's name
EXPORTER = "slamp_deploy.exporters.onnx_export"


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxExport:
    """What export_onnx wrote."""

    path: Path
    input_name: str
    input_shape: tuple[int, ...]
    spike_outputs: tuple[str, ...]
    state_pairs: dict[str, str]
    state_shapes: dict[str, tuple[int, ...]]
    timesteps: int
    opset: int
    n_nodes: int


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"_{hint}_{self._n}"

    def const(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str, out: str | None = None,
           **attrs: Any) -> str:
        out = out or self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type),
                                           **attrs))
        return out


class _OnnxOps:
    """neuron_step's backend that emits ONNX nodes for neuron node ``name`` (constants made
    once per node, on first use, so the node order is the update's order of operations)."""

    def __init__(self, b: _Builder, name: str, p: neuron_step.NeuronParams) -> None:
        self.b, self.name, self.p = b, name, p
        self._consts: dict[str, str] = {}

    def _once(self, key: str, hint: str, value: Any) -> str:
        if key not in self._consts:
            self._consts[key] = self.b.const(hint, value)
        return self._consts[key]

    def param(self, key: str, hint: str) -> str:
        return self._once(key, f"{self.name}_{hint}", self.p.value(key))

    def one(self) -> str:
        return self._once("one", "one", 1.0)

    def add(self, a: str, b: str, hint: str, out: str | None = None) -> str:
        state_next = None if out is None else f"{self.name}.{out}.next"
        return self.b.op("Add", [a, b], hint, out=state_next)

    def sub(self, a: str, b: str, hint: str) -> str:
        return self.b.op("Sub", [a, b], hint)

    def mul(self, a: str, b: str, hint: str) -> str:
        return self.b.op("Mul", [a, b], hint)

    def above(self, v: str, thr: str) -> str:
        zero = self._once("zero", "zero", 0.0)
        return self.b.op("Cast", [self.b.op("Greater", [self.b.op("Sub", [v, thr], "sub"), zero],
                                            "gt")], "flag", to=TensorProto.FLOAT)


def _neuron(b: _Builder, name: str, p: neuron_step.NeuronParams, cur: str) -> tuple[str, dict]:
    """Emit one neuron step; returns (spike value, {state input: state output})."""
    mem = f"{name}.mem"
    pairs = {mem: f"{name}.mem.next"}
    syn = None
    if p.has_syn:
        syn = f"{name}.syn"
        pairs[syn] = f"{name}.syn.next"
    spk, m, _ = neuron_step.step(p, mem, syn, cur, _OnnxOps(b, name, p))
    b.op("Identity", [m], "mem", out=pairs[mem])
    return b.op("Identity", [spk], "spk", out=f"{name}.spikes"), pairs


def _synapse(b: _Builder, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    kind = nir_nodes.kind_of(node)
    if kind is None or kind.onnx is None:
        raise ExportError(f"NIR node {name!r} of type {nir_nodes.type_name(node)} has no ONNX "
                          "mapping")
    return kind.onnx(b, name, node, cur, in_shape)


def _shape_of(graph: Any, name: str, port: str) -> tuple[int, ...]:
    try:
        return nir_graph.node_shape(graph.nodes[name], port)
    except ExportError as exc:
        raise ExportError(f"NIR node {name!r}: {exc}") from exc


@dataclass(slots=True)
class _Graph:
    """The ONNX graph being built: values by NIR node, graph inputs/outputs, neuron states."""

    b: _Builder
    inputs: list[Any]
    values: dict[str, str]
    state_outputs: list[Any]
    spike_outputs: list[str]
    pairs: dict[str, str]
    shapes: dict[str, tuple[int, ...]]

    def add_neuron(self, n: str, p: neuron_step.NeuronParams, cur: str,
                   src_shape: tuple[int, ...]) -> None:
        shape = tuple(p.threshold.shape)
        if shape != src_shape:
            raise ExportError(f"NIR node {n!r} has neuron shape {shape} but receives {src_shape}")
        self.values[n], st = _neuron(self.b, n, p, cur)
        self.spike_outputs.append(self.values[n])
        for s_in, s_out in st.items():
            self.pairs[s_in] = s_out
            self.shapes[s_in] = shape
            self.inputs.append(helper.make_tensor_value_info(s_in, TensorProto.FLOAT,
                                                             ["N", *shape]))
            self.state_outputs.append(helper.make_tensor_value_info(s_out, TensorProto.FLOAT,
                                                                    ["N", *shape]))

    def outputs(self) -> list[Any]:
        return [
            helper.make_tensor_value_info(
                s, TensorProto.FLOAT, ["N", *self.shapes[s.removesuffix(".spikes") + ".mem"]])
            for s in self.spike_outputs
        ] + self.state_outputs


def _emit(graph: Any, order: list[str], preds: dict[str, list[str]], dt: float
          ) -> tuple[_Graph, tuple[int, ...]]:
    in_name = order[0]
    in_shape = _shape_of(graph, in_name, "output")
    g = _Graph(b=_Builder(), values={in_name: INPUT_NAME}, state_outputs=[], spike_outputs=[],
               pairs={}, shapes={}, inputs=[helper.make_tensor_value_info(
                   INPUT_NAME, TensorProto.FLOAT, ["N", *in_shape])])
    for n in order[1:]:
        node = graph.nodes[n]
        srcs = [g.values[s] for s in preds[n]]
        cur = srcs[0]
        for s in srcs[1:]:
            cur = g.b.op("Add", [cur, s], "fanin")
        if nir_nodes.type_name(node) == "Output":
            g.values[n] = cur
            continue
        src_shape = _shape_of(graph, preds[n][0], "output")
        if nir_nodes.is_neuron(node):
            g.add_neuron(n, nir_nodes.neuron_params(n, node, dt), cur, src_shape)
        else:
            g.values[n] = _synapse(g.b, n, node, cur, src_shape)
    if not g.spike_outputs:
        raise ExportError("NIR graph has no neuron node (LIF, IF or CubaLIF): nothing to export")
    return g, in_shape


def _props(graph: Any, g: _Graph, timesteps: int, dt: float) -> dict[str, str]:
    meta = dict(getattr(graph, "metadata", None) or {})
    props = {
        "slamp.state_pairs": json.dumps(g.pairs),
        "slamp.timesteps": str(int(timesteps)),
        "slamp.spike_outputs": json.dumps(g.spike_outputs),
        "slamp.dt": repr(dt),
        "slamp.exporter": EXPORTER,
    }
    for key in ("slamp.readout", "slamp.encoding"):
        if key in meta:
            props[key] = str(meta[key])
    return props


def export_onnx(graph: Any, path: str | Path, timesteps: int | None = None) -> OnnxExport:
    """Write ``graph`` as a stateful single-step ONNX model to ``path`` (atomically)."""
    order, preds = nir_graph.check_nir_graph(graph, nir_nodes.NODES)
    dt = nir_graph.graph_dt(graph)
    meta = dict(getattr(graph, "metadata", None) or {})
    if timesteps is None:
        if "slamp.timesteps" not in meta:
            raise ExportError("ONNX export needs the number of time steps: pass timesteps")
        timesteps = int(meta["slamp.timesteps"])
    g, in_shape = _emit(graph, order, preds, dt)
    onnx_graph = helper.make_graph(g.b.nodes, "slamp_snn_step", g.inputs, g.outputs(),
                                   g.b.inits)
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="slamp-deploy",
    )
    helper.set_model_props(model, _props(graph, g, timesteps, dt))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"generated ONNX model fails onnx.checker: {exc}") from exc
    path = write_atomically(path, lambda tmp: onnx.save_model(model, tmp))
    return OnnxExport(
        path=path, input_name=INPUT_NAME, input_shape=in_shape,
        spike_outputs=tuple(g.spike_outputs), state_pairs=g.pairs, state_shapes=g.shapes,
        timesteps=int(timesteps), opset=OPSET, n_nodes=len(g.b.nodes),
    )


def run_onnx(path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the exported step model for ``T = x.shape[0]`` steps on ``x`` [T, N, *input_shape].

    Returns {node: spikes [T, N, *shape]} for every neuron node plus ``"<node>.mem"`` /
    ``"<node>.syn"`` (the state after each step), all float32. States start at zero.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    pairs: dict[str, str] = json.loads(meta["slamp.state_pairs"])
    spike_outs: list[str] = json.loads(meta["slamp.spike_outputs"])
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[1]
    dims = {i.name: i.shape for i in sess.get_inputs()}
    state = {s: np.zeros((n, *[int(d) for d in dims[s][1:]]), np.float32) for s in pairs}
    names = spike_outs + list(pairs.values())
    rec: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for t in range(x.shape[0]):
        res = sess.run(names, {INPUT_NAME: x[t], **state})
        out = dict(zip(names, res, strict=True))
        for k in names:
            rec[k].append(out[k])
        state = {s: out[o] for s, o in pairs.items()}
    result = {s.removesuffix(".spikes"): np.stack(rec[s]) for s in spike_outs}
    for s, o in pairs.items():
        result[s] = np.stack(rec[o])
    return result


@register_exporter("onnx")
class OnnxExporter:
    """"onnx": the stateful single-step model, verified by T steps of onnxruntime."""

    name = "onnx"
    filename = "model.onnx"
    runtime = "onnxruntime"

    def unavailable(self) -> str | None:
        return None

    def export(self, graph: Any, workdir: Path, *, timesteps: int) -> Path:
        return export_onnx(graph, Path(workdir) / self.filename, timesteps=timesteps).path

    def run(self, path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        return run_onnx(path, x)

    def describe(self, path: Path) -> dict[str, Any]:
        """The facts the report gives about the written file."""
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return {"opset": OPSET, "state_pairs": json.loads(props["slamp.state_pairs"])}
