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
Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, LIF, IF, CubaLIF; anything else
raises ExportError naming the node. Opset 17, IR version 8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from slamp_deploy.exporters._atomic import write_atomically

from slamp_deploy.errors import ExportError

from . import nir_sim

__all__ = ["OPSET", "OnnxExport", "export_onnx", "run_onnx"]

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "x_t"


@dataclass(frozen=True)
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


def _f32(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float32)


def _neuron(b: _Builder, name: str, p: nir_sim.NeuronParams, cur: str) -> tuple[str, dict]:
    """Emit one neuron step; returns (spike value, {state input: state output})."""
    thr = b.const(f"{name}_thr", p.threshold)
    zero = b.const("zero", 0.0)
    mem = f"{name}.mem"
    mem_next = f"{name}.mem.next"
    pairs = {mem: mem_next}

    def gt_thr(v: str) -> str:
        return b.op("Cast", [b.op("Greater", [b.op("Sub", [v, thr], "sub"), zero], "gt")],
                    "flag", to=TensorProto.FLOAT)

    reset = gt_thr(mem)  # snnTorch's mem_reset on the previous membrane
    has_vr = bool(np.any(p.v_reset != 0))
    vr = b.const(f"{name}_vreset", p.v_reset) if has_vr else None
    if p.kind == "CubaLIF":
        syn, syn_next = f"{name}.syn", f"{name}.syn.next"
        pairs[syn] = syn_next
        alpha = b.const(f"{name}_alpha", np.clip(p.alpha, 0.0, 1.0))
        beta = b.const(f"{name}_beta", np.clip(p.beta, 0.0, 1.0))
        syn_in = cur if p.unit_gain_syn else b.op(
            "Mul", [b.const(f"{name}_gsyn", p.gain_syn), cur], "gin")
        b.op("Add", [b.op("Mul", [alpha, syn], "asyn"), syn_in], "syn", out=syn_next)
        drive = syn_next if p.unit_gain else b.op(
            "Mul", [b.const(f"{name}_gmem", p.gain), syn_next], "gmem")
        m = b.op("Add", [b.op("Mul", [beta, mem], "bmem"), drive], "m")
        if np.any(p.leak != 0):
            m = b.op("Add", [m, b.const(f"{name}_leak", p.leak)], "leak")
        if p.reset_mechanism == "zero":
            m = b.op("Sub", [m, b.op("Mul", [m, reset], "mr")], "zr")
            if has_vr:
                m = b.op("Add", [m, b.op("Mul", [reset, vr], "rv")], "vr")
        elif p.reset_mechanism == "subtract":
            m = b.op("Sub", [m, b.op("Mul", [reset, thr], "rt")], "sr")
    else:
        beta = b.const(f"{name}_beta", np.clip(p.beta, 0.0, 1.0))
        drive = cur if p.unit_gain else b.op("Mul", [b.const(f"{name}_g", p.gain), cur], "g")
        prev = mem
        if p.reset_mechanism == "zero":
            one = b.const("one", 1.0)
            prev = b.op("Mul", [b.op("Sub", [one, reset], "1mr"), prev], "zr")
            if has_vr:
                prev = b.op("Add", [prev, b.op("Mul", [reset, vr], "rv")], "vr")
        m = b.op("Add", [b.op("Mul", [beta, prev], "bmem"), drive], "m")
        if np.any(p.leak != 0):
            m = b.op("Add", [m, b.const(f"{name}_leak", p.leak)], "leak")
        if p.reset_mechanism == "subtract":
            m = b.op("Sub", [m, b.op("Mul", [reset, thr], "rt")], "sr")
    spk = gt_thr(m)
    if not p.reset_delay and p.reset_mechanism != "none":
        do_reset = b.op("Sub", [spk, reset], "dr")
        if p.reset_mechanism == "subtract":
            m = b.op("Sub", [m, b.op("Mul", [do_reset, thr], "drt")], "sr2")
        else:
            m = b.op("Sub", [m, b.op("Mul", [do_reset, m], "drm")], "zr2")
            if has_vr:
                m = b.op("Add", [m, b.op("Mul", [spk, vr], "sv")], "vr2")
    b.op("Identity", [m], "mem", out=mem_next)
    return b.op("Identity", [spk], "spk", out=f"{name}.spikes"), pairs


def _synapse(b: _Builder, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    tname = type(node).__name__
    if tname in ("Affine", "Linear"):
        w = np.asarray(node.weight, dtype=np.float32)
        flat = cur if len(in_shape) == 1 else b.op("Flatten", [cur], "flat", axis=1)
        ins = [flat, b.const(f"{name}_W", w)]
        if tname == "Affine":
            ins.append(b.const(f"{name}_b", np.asarray(node.bias, dtype=np.float32)))
        return b.op("Gemm", ins, name, transB=1)
    if tname in ("Conv1d", "Conv2d"):
        w = np.asarray(node.weight, dtype=np.float32)
        nd = w.ndim - 2
        stride = nir_sim._pair(node.stride, nd)
        dil = nir_sim._pair(node.dilation, nd)
        pads = nir_sim.conv_padding(node.padding, tuple(w.shape[2:]), dil, stride)
        ins = [cur, b.const(f"{name}_W", w)]
        if node.bias is not None and np.any(node.bias):
            ins.append(b.const(f"{name}_b", np.asarray(node.bias, dtype=np.float32)))
        return b.op("Conv", ins, name, strides=list(stride), dilations=list(dil),
                    group=int(node.groups), kernel_shape=list(w.shape[2:]),
                    pads=[p[0] for p in pads] + [p[1] for p in pads])
    if tname in ("AvgPool2d", "SumPool2d"):
        k = nir_sim._pair(node.kernel_size, 2)
        s = nir_sim._pair(node.stride if node.stride is not None else node.kernel_size, 2)
        p = nir_sim._pair(node.padding if node.padding is not None else 0, 2)
        out = b.op("AveragePool", [cur], name, kernel_shape=list(k), strides=list(s),
                   pads=[p[0], p[1], p[0], p[1]], count_include_pad=1)
        if tname == "SumPool2d":
            out = b.op("Mul", [out, b.const("area", float(k[0] * k[1]))], "sum")
        return out
    if tname == "Flatten":
        nd = len(in_shape)
        start, end = node.start_dim % nd, node.end_dim % nd
        new = (*in_shape[:start], int(np.prod(in_shape[start : end + 1])), *in_shape[end + 1 :])
        return b.op("Reshape", [cur, b.const("shape", [0, *new], np.int64)], name)
    if tname == "Scale":
        return b.op("Mul", [cur, b.const(f"{name}_s", np.asarray(node.scale, np.float32))], name)
    raise ExportError(f"NIR node {name!r} of type {tname} has no ONNX mapping")


def _shape_of(graph: Any, name: str, port: str) -> tuple[int, ...]:
    try:
        return nir_sim.node_shape(graph.nodes[name], port)
    except ExportError as exc:
        raise ExportError(f"NIR node {name!r}: {exc}") from exc


def export_onnx(graph: Any, path: str | Path, timesteps: int | None = None) -> OnnxExport:
    """Write ``graph`` as a stateful single-step ONNX model to ``path`` (atomically)."""
    order = nir_sim.topological_order(graph)
    dt = nir_sim.graph_dt(graph)
    meta = dict(getattr(graph, "metadata", None) or {})
    if timesteps is None:
        if "slamp.timesteps" not in meta:
            raise ExportError("ONNX export needs the number of time steps: pass timesteps")
        timesteps = int(meta["slamp.timesteps"])
    preds: dict[str, list[str]] = {n: [] for n in order}
    for src, dst in graph.edges:
        preds[dst].append(src)
    b = _Builder()
    values: dict[str, str] = {}
    in_name = order[0]
    in_shape = _shape_of(graph, in_name, "output")
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *in_shape])]
    state_outputs = []
    spike_outputs: list[str] = []
    pairs: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for n in order:
        node = graph.nodes[n]
        tname = type(node).__name__
        if n == in_name:
            values[n] = INPUT_NAME
            continue
        srcs = [values[s] for s in preds[n]]
        cur = srcs[0]
        for s in srcs[1:]:
            cur = b.op("Add", [cur, s], "fanin")
        if tname == "Output":
            values[n] = cur
            continue
        src_shape = _shape_of(graph, preds[n][0], "output")
        if tname in nir_sim.NEURON_TYPES:
            p = nir_sim.neuron_params(n, node, dt)
            shape = tuple(p.threshold.shape)
            if shape != src_shape:
                raise ExportError(
                    f"NIR node {n!r} has neuron shape {shape} but receives {src_shape}")
            values[n], st = _neuron(b, n, p, cur)
            spike_outputs.append(values[n])
            for s_in, s_out in st.items():
                pairs[s_in] = s_out
                shapes[s_in] = shape
                inputs.append(helper.make_tensor_value_info(s_in, TensorProto.FLOAT,
                                                            ["N", *shape]))
                state_outputs.append(helper.make_tensor_value_info(s_out, TensorProto.FLOAT,
                                                                   ["N", *shape]))
        else:
            values[n] = _synapse(b, n, node, cur, src_shape)
    if not spike_outputs:
        raise ExportError("NIR graph has no neuron node (LIF, IF or CubaLIF): nothing to export")
    outputs = [
        helper.make_tensor_value_info(
            s, TensorProto.FLOAT, ["N", *shapes[s.removesuffix(".spikes") + ".mem"]])
        for s in spike_outputs
    ] + state_outputs
    onnx_graph = helper.make_graph(b.nodes, "slamp_snn_step", inputs, outputs, b.inits)
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="slamp-deploy",
    )
    props = {
        "slamp.state_pairs": json.dumps(pairs),
        "slamp.timesteps": str(int(timesteps)),
        "slamp.spike_outputs": json.dumps(spike_outputs),
        "slamp.dt": repr(dt),
        "slamp.exporter": "slamp_deploy.exporters.onnx_export",
    }
    for key in ("slamp.readout", "slamp.encoding"):
        if key in meta:
            props[key] = str(meta[key])
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"generated ONNX model fails onnx.checker: {exc}") from exc
    path = write_atomically(path, lambda tmp: onnx.save_model(model, tmp))
    return OnnxExport(
        path=path, input_name=INPUT_NAME, input_shape=in_shape,
        spike_outputs=tuple(spike_outputs), state_pairs=pairs, state_shapes=shapes,
        timesteps=int(timesteps), opset=OPSET, n_nodes=len(b.nodes),
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
