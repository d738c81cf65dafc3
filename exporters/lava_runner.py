"""Run a NIR graph on Lava's Loihi 2 simulator (lava-nc 0.10.0): a script for the Lava interpreter.

    python lava_runner.py --nir model.nir --input in.npz --output out.npz \
        --mode floating_pt|fixed_pt [--stats out.json] [--clip-percentile 100] [--verbose]

Runs inside the Python 3.10 / numpy<2 interpreter made by ``scripts/lava-env.sh``; the main
environment talks to it through files only (``exporters/lava_export.py``). The graph-to-matrix
and quantization helpers at the top of this file need only numpy, scipy and nir, so they are
importable (and tested) in the main environment too; Lava is imported inside ``run_lava_network``.

Files
-----
in.npz:   ``x`` float32 [T, N, *input_shape] (direct encoding: real values; rate: 0/1).
out.npz:  ``spikes:<node>`` uint8 [T, N, *shape] for every neuron node, aligned to the model's
          time steps (the per-layer delay removed); ``order`` the neuron node names in order.
out.json: (``--stats``, default out.npz with .json) ``{"mode", "n_samples", "timesteps",
          "lava_steps", "layers": [per layer: name, kind, lava_process, delay, n_neurons,
          nnz_per_sample, reset_mechanism, reset_substituted, du, dv, vth, and in fixed_pt a
          "quant" dict], "input_quant", "ignored_nodes", "warnings", "timings": {"build_s",
          "lava_s", "total_s"}, "versions"}``. Errors go to stderr with exit code 2 (a graph
          Lava cannot express; one line naming the node) or 1 (anything else).

Network built (one Lava run for all N samples)
----------------------------------------------
* Every maximal chain of synaptic/shape nodes between two neuron nodes (Affine, Linear, Conv1d,
  Conv2d, AvgPool2d, SumPool2d, Flatten, Scale) is composed into one affine map and unrolled
  into a sparse matrix (pruned weights are exact zeros and are not stored). The N samples run
  as N copies of the network in ONE Lava run: each connection layer is a single ``Sparse``
  process with the block-diagonal matrix kron(I_N, M). Conv layers are therefore unrolled
  sparse matrices, not ``lava.proc.conv.Conv``: Conv is per sample (its WHC shapes have no
  batch axis), so batching N samples would need N Conv processes per layer, each an OS-level
  Lava process, and Lava's Conv model is dense. The unrolled Sparse holds exactly the same
  weights (conv weight sharing is what a chip compiler would exploit; the NIR file keeps it).
* Neurons: NIR LIF/IF -> ``LIF(du=1, dv=1-beta, vth)``; CubaLIF -> ``LIF(du=1-alpha,
  dv=1-beta)``. snnTorch's Synaptic with zero reset and reset_delay=True zeroes the membrane
  on the step after a spike, which is Lava's ``LIFRefractory(refractory_period=1)`` (Lava ships
  no fixed-point model for it; the bit-accurate one below adds the refractory hold to
  ``PyLifModelBitAcc``). Leaky zero reset needs no refractory step (its reset at t+1 equals
  Lava's v=0 at t). Loihi resets to zero only: subtract and none resets run as zero reset and
  are flagged ``reset_substituted``. Per-neuron thresholds that differ are folded into the
  incoming weights (rows divided by the threshold, vth=1); decays must be one value per layer
  (Lava's du/dv are per population), else ExportError.
* Bias: each layer's bias arrives through an always-on input axon (a shared bias RingBuffer,
  channel l) and its own ``Sparse`` into the layer's ``a_in``; channel l starts spiking at the
  Lava step at which layer l's first real input reaches its Sparse, so bias and input stay in
  step with the one-step delay of every connection process. (LIF bias_mant would act from
  step 0 and break exact agreement.)
* Direct (real-valued) input reaches layer 1 as graded spikes: the input RingBuffer sends x_t
  as payload and layer 1's Sparse has ``num_message_bits=24`` (a_out = W x_t). Binary input
  (all 0/1) uses plain spikes.
* Delay: each Sparse adds one step, so a neuron layer at depth d (1 + the depth of its deepest
  source; the input has depth 0; in a chain, layer l has depth l) emits model step t at Lava
  step t + d + 1, i.e. sink index t + d. The run lasts T + max d steps, input and bias buffers
  are zero-padded so the ring never wraps, and out.npz holds sink[t + d] for t < T.
* Residual joins: every edge into a neuron node is one input branch (the chain of synaptic and
  shape nodes back to a neuron node or the input), composed on its own and connected by its own
  Sparse into the same ``a_in``, which Lava sums. A branch from a shallower source (a shortcut)
  goes through a ``DelaySparse`` that holds it ``depth - 1 - source depth`` steps (Loihi 2: at
  most 63), so all branches arrive together. In fixed_pt the branches share the layer's
  mantissa scale and weight exponent (quantized as one matrix); only a graded-input branch
  differs, by the input shift. A synaptic node with several inputs (a join after the neurons)
  is refused by name.

floating_pt uses float64 (Lava's float models); it agrees spike for spike with
``nir_sim.simulate(graph, x, dtype=float64)``. fixed_pt quantizes per layer:
* weights to Loihi 8-bit mantissas with a shared weight exponent: mixed-sign layers use even
  values in [-256, 254] (Lava truncates the LSB), excitatory [0, 255], inhibitory [-255, 0];
  the mantissa scale maps the ``clip_percentile`` of |w| (default 100: max, nothing clips) to
  full range; weight_exp in [-8, 7] puts the 17-bit vth near 2^13 (headroom for the 24-bit
  membrane). The real-to-fixed current scale is S = q_w * 2^weight_exp, vth = round(thr * S).
* bias through its own 8-bit Sparse with its own exponent; dv = round((1-beta)*4096), du =
  round((1-alpha)*4096) - 1 (Loihi adds 1), 4095 for LIF; graded input x * 2^k, k chosen so
  max|x| * 2^k <= 255, folded into layer 1's weight exponent.
* per layer "quant": weight/bias clipped fraction (of nonzero weights), zeroed fraction
  (nonzero weights that round to 0), max/rms error in real units and relative rms error,
  threshold relative error, effective beta/alpha, and the 16-bit a_in: the worst case if
  every input spiked at once (``a_in_max_abs_possible``) and the largest value this run
  produced (``a_in_max_abs_observed``, ``a_in_overflow_observed``). Lava's Python models
  neither clip nor wrap a_in; on the chip it saturates. Lava clips weights silently; these
  numbers are the explicit record.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

if __package__:  # imported from the main environment (slamp_deploy.exporters.lava_runner)
    from . import nir_sim
else:  # run as a script by the Lava interpreter: nir_sim sits next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import nir_sim  # type: ignore[no-redef]
ExportError = nir_sim.ExportError

TARGET_VTH = 2**13
WEIGHT_EXP_RANGE = (-8, 7)
VTH_MAX = 2**17 - 1
DECAY_UNITY = 4096
A_IN_MAX = 2**15 - 1
_CHUNK = 256


# --------------------------------------------------------------------------- graph -> stages


@dataclass(frozen=True)
class Stage:
    """One neuron layer and the composed affine map that feeds it (per sample)."""

    name: str
    kind: str
    linear_nodes: tuple[str, ...]
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    matrix: sp.csr_matrix  # [n_out, n_in] float64, rows already scaled by gains/thresholds
    bias: np.ndarray | None  # [n_out] float64 (gain and leak included) or None
    threshold: float
    beta: float
    alpha: float | None
    reset_mechanism: str
    reset_substituted: bool
    refractory: bool
    threshold_normalized: bool
    # where the columns of ``matrix`` come from: one (source, size) per input branch, in column
    # order; a source is a neuron node, or None for the network input. A chain has one branch:
    # the layer before. Residual joins have several, summed into the same neurons.
    sources: tuple[tuple[str | None, int], ...]
    depth: int  # Lava steps from the input: 1 + the deepest source's depth (input: 0)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.shape))


def _strip_bias(node: Any) -> Any:
    tname = type(node).__name__
    if tname == "Affine":
        import nir

        return nir.Linear(np.asarray(node.weight))
    if tname in ("Conv1d", "Conv2d") and node.bias is not None:
        bias = np.zeros_like(np.asarray(node.bias))
        return dataclasses.replace(node, bias=bias)
    return node


def compose_affine(
    graph: Any, names: list[str], in_shape: tuple[int, ...]
) -> tuple[sp.csr_matrix, np.ndarray | None, tuple[int, ...]]:
    """The chain of synaptic/shape nodes ``names`` as (sparse M [out, in], bias or None, shape).

    Exact for a single weight node (each entry is the float weight itself); built in chunks of
    basis vectors so large convs never need a dense [out, in] matrix.
    """
    n_in = int(np.prod(in_shape)) if in_shape else 1
    plain = [_strip_bias(graph.nodes[n]) for n in names]

    def run(x: np.ndarray, nodes: list[Any]) -> np.ndarray:
        for n, node in zip(names, nodes, strict=True):
            x = nir_sim.apply_node(n, node, x)
        return x

    zero = run(np.zeros((1, *in_shape)), [graph.nodes[n] for n in names])
    out_shape = tuple(zero.shape[1:])
    bias = zero.reshape(-1)
    blocks = []
    for start in range(0, n_in, _CHUNK):
        stop = min(start + _CHUNK, n_in)
        basis = np.zeros((stop - start, n_in))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        cols = run(basis.reshape((stop - start, *in_shape)), plain).reshape(stop - start, -1)
        blocks.append(sp.csr_matrix(cols.T))
    mat = sp.hstack(blocks, format="csr") if blocks else sp.csr_matrix((bias.size, 0))
    mat.eliminate_zeros()
    return mat, (bias if np.any(bias) else None), out_shape


def _uniform(name: str, what: str, arr: np.ndarray) -> float:
    vals = np.unique(np.asarray(arr, dtype=np.float64))
    if vals.size != 1:
        raise ExportError(
            f"NIR node {name!r}: Lava's LIF takes one {what} per layer but the node has "
            f"{vals.size} distinct values ({vals.min():.6g}..{vals.max():.6g}); give the layer "
            "a single value or skip the Lava export"
        )
    return float(vals[0])


def build_stages(graph: Any) -> tuple[list[Stage], list[str]]:
    """Neuron layers in order, each with its composed input map; plus ignored trailing nodes."""
    order = nir_sim.topological_order(graph)
    dt = nir_sim.graph_dt(graph)
    preds: dict[str, list[str]] = {n: [] for n in order}
    for src, dst in graph.edges:
        preds[dst].append(src)
    inp = order[0]
    in_shape = nir_sim.node_shape(graph.nodes[inp], "output")
    neuron = {n for n in order if type(graph.nodes[n]).__name__ in nir_sim.NEURON_TYPES}
    stages: list[Stage] = []
    by_name: dict[str, Stage] = {}
    used: set[str] = set()
    for n in order[1:]:
        node = graph.nodes[n]
        if n not in neuron:
            continue
        # one branch per edge into the neuron node: the chain of synaptic/shape nodes back to
        # a neuron node or the input (NIR sums the edges into a node)
        mats, biases, srcs, linear, shapes = [], [], [], [], []
        for head in preds[n]:
            chain: list[str] = []
            cur = head
            while cur != inp and cur not in neuron:
                if len(preds[cur]) != 1:
                    raise ExportError(
                        f"NIR node {cur!r} has {len(preds[cur])} inputs; the Lava backend joins "
                        f"branches only at neuron nodes (sum the currents before the neurons)")
                chain.append(cur)
                cur = preds[cur][0]
            chain.reverse()
            src_shape = in_shape if cur == inp else by_name[cur].shape
            mat_b, bias_b, shape_b = compose_affine(graph, chain, src_shape)
            mats.append(mat_b)
            biases.append(bias_b)
            srcs.append((None if cur == inp else cur, int(np.prod(src_shape)) if src_shape else 1))
            linear.extend(chain)
            shapes.append(shape_b)
            used.update(chain)
        if len(set(shapes)) > 1:
            raise ExportError(f"NIR node {n!r} sums inputs of shapes "
                              f"{', '.join(map(str, shapes))}")
        out_shape = shapes[0]
        mat = sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0]
        bias = None
        for b in biases:
            if b is not None:
                bias = b if bias is None else bias + b
        first = srcs[0][0]
        cur_shape = ((sum(k for _, k in srcs),) if len(srcs) > 1 else
                     in_shape if first is None else by_name[first].shape)
        depth = 1 + max(0 if src is None else by_name[src].depth for src, _ in srcs)
        p = nir_sim.neuron_params(n, node, dt)
        if tuple(p.threshold.shape) != out_shape:
            raise ExportError(
                f"NIR node {n!r} has neuron shape {p.threshold.shape} but receives {out_shape}"
            )
        if np.any(p.v_reset != 0):
            raise ExportError(f"NIR node {n!r}: Loihi resets to 0, v_reset != 0 is not supported")
        beta = _uniform(n, "voltage decay (beta)", np.clip(p.beta, 0.0, 1.0))
        alpha = None
        row = p.gain.reshape(-1).astype(np.float64)
        if p.kind == "CubaLIF":
            alpha = _uniform(n, "current decay (alpha)", np.clip(p.alpha, 0.0, 1.0))
            row = row * p.gain_syn.reshape(-1)
            if np.any(p.leak != 0):
                raise ExportError(f"NIR node {n!r}: CubaLIF with v_leak != 0 is not supported")
        unit = p.unit_gain and (p.kind != "CubaLIF" or p.unit_gain_syn)
        thr = p.threshold.reshape(-1)
        normalized = bool(np.unique(thr).size != 1)
        if normalized:
            if np.any(thr <= 0):
                raise ExportError(f"NIR node {n!r}: thresholds must be > 0 for Lava")
            row = row / thr
        if not unit or normalized:
            mat = sp.diags(row) @ mat
            bias = None if bias is None else bias * row
        if p.kind != "CubaLIF" and np.any(p.leak != 0):
            leak = p.leak.reshape(-1) / (thr if normalized else 1.0)
            bias = leak if bias is None else bias + leak
        mech = p.reset_mechanism
        stage = Stage(
            name=n, kind=p.kind, linear_nodes=tuple(linear), in_shape=cur_shape,
            shape=out_shape, matrix=sp.csr_matrix(mat), bias=bias,
            threshold=1.0 if normalized else float(thr[0]), beta=beta, alpha=alpha,
            reset_mechanism=mech, reset_substituted=mech != "zero",
            refractory=p.kind == "CubaLIF" and p.reset_delay,
            threshold_normalized=normalized, sources=tuple(srcs), depth=depth,
        )
        stages.append(stage)
        by_name[n] = stage
    if not stages:
        raise ExportError("NIR graph has no neuron node (LIF, IF or CubaLIF): nothing to run")
    # nodes after the last neuron layer (a trailing readout Affine, say): not run in Lava
    ignored = [n for n in order[1:] if n not in neuron and n not in used
               and type(graph.nodes[n]).__name__ != "Output"]
    return stages, ignored


# --------------------------------------------------------------------------- fixed point


@dataclass(frozen=True)
class QuantWeights:
    """8-bit mantissas of one weight set with a shared exponent, plus the error record."""

    matrix: sp.csr_matrix  # int32 mantissas
    weight_exp: int
    sign_mode: str  # "MIXED" | "EXCITATORY" | "INHIBITORY" | "NULL"
    scale: float  # mantissa units per real unit, at weight_exp 0
    stats: dict = field(default_factory=dict)


def _sign_mode(data: np.ndarray) -> tuple[str, int, int, int]:
    """(mode, lo, hi, step) of Loihi 8-bit mantissas for these (nonzero) values."""
    if data.size == 0:
        return "NULL", 0, 0, 1
    if data.min() >= 0:
        return "EXCITATORY", 0, 255, 1
    if data.max() <= 0:
        return "INHIBITORY", -255, 0, 1
    return "MIXED", -256, 254, 2


def quantize(mat: sp.csr_matrix, q: float, lo: int, hi: int, step: int) -> tuple[np.ndarray, dict]:
    """Mantissas round(w*q) on a grid of ``step`` clipped to [lo, hi], and the error stats."""
    w = mat.data.astype(np.float64)
    scaled = w * q
    mant = np.round(scaled / step) * step
    clipped = (mant > hi) | (mant < lo)
    mant = np.clip(mant, lo, hi).astype(np.int32)
    err = mant / q - w if q else -w
    rms_w = float(np.sqrt(np.mean(w**2))) if w.size else 0.0
    stats = {
        "n_nonzero": int(w.size),
        "clipped_fraction": float(clipped.mean()) if w.size else 0.0,
        "zeroed_fraction": float(((mant == 0) & (w != 0)).mean()) if w.size else 0.0,
        "max_abs_error": float(np.abs(err).max()) if w.size else 0.0,
        "rms_error": float(np.sqrt(np.mean(err**2))) if w.size else 0.0,
        "rel_rms_error": float(np.sqrt(np.mean(err**2)) / rms_w) if rms_w else 0.0,
        "max_abs_weight": float(np.abs(w).max()) if w.size else 0.0,
    }
    return mant, stats


def _csr_with(mat: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix((data, mat.indices.copy(), mat.indptr.copy()), shape=mat.shape)
    out.eliminate_zeros()
    return out


def quantize_stage(
    st: Stage, clip_percentile: float = 100.0, input_shift: int = 0, graded: bool = False
) -> tuple[QuantWeights, QuantWeights | None, dict]:
    """Fixed-point form of one stage: weights, bias column (or None) and neuron parameters.

    ``graded``: the stage's input is a graded payload x * 2^k (k = ``input_shift``, |payload|
    <= 255), which the weight exponent divides back out; else binary spikes.
    """
    data = st.matrix.data
    mode, lo, hi, step = _sign_mode(data)
    ref = float(np.percentile(np.abs(data), clip_percentile)) if data.size else 0.0
    q_w = (hi if mode != "INHIBITORY" else -lo) / ref if ref > 0 else 1.0
    e = math.floor(math.log2(TARGET_VTH / (st.threshold * q_w))) if st.threshold > 0 else 0
    e = int(min(max(e, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))
    scale = q_w * 2.0**e  # a_in units per unit of real current
    mant, wstats = quantize(st.matrix, q_w, lo, hi, step)
    w_q = QuantWeights(_csr_with(st.matrix, mant), e - input_shift, mode, q_w, wstats)
    neuron: dict[str, Any] = {}
    vth_real = st.threshold * scale
    vth = int(min(max(round(vth_real), 0), VTH_MAX))
    neuron["vth"] = vth
    neuron["threshold_rel_error"] = abs(vth / scale - st.threshold) / st.threshold if (
        st.threshold) else 0.0
    neuron["threshold_clipped"] = bool(round(vth_real) > VTH_MAX)
    dv = int(min(max(round((1.0 - st.beta) * DECAY_UNITY), 0), DECAY_UNITY - 1))
    neuron["dv"] = dv
    neuron["beta"] = st.beta
    neuron["beta_effective"] = 1.0 - dv / DECAY_UNITY
    if st.alpha is None:
        neuron["du"] = DECAY_UNITY - 1
        neuron["alpha_effective"] = 0.0
    else:
        du = int(min(max(round((1.0 - st.alpha) * DECAY_UNITY) - 1, 0), DECAY_UNITY - 1))
        neuron["du"] = du
        neuron["alpha"] = st.alpha
        neuron["alpha_effective"] = 1.0 - (du + 1) / DECAY_UNITY
    b_q = None
    max_bias_units = 0.0
    if st.bias is not None:
        bcol = sp.csr_matrix(st.bias.reshape(-1, 1))
        bmode, blo, bhi, bstep = _sign_mode(bcol.data)
        bmax = float(np.abs(bcol.data).max())
        full = bhi if bmode != "INHIBITORY" else -blo
        e_b = math.ceil(math.log2(bmax * scale / full)) if bmax > 0 else 0
        e_b = int(min(max(e_b, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))
        q_b = scale / 2.0**e_b
        bmant, bstats = quantize(bcol, q_b, blo, bhi, bstep)
        b_q = QuantWeights(_csr_with(bcol, bmant), e_b, bmode, q_b, bstats)
        max_bias_units = float(np.abs(bmant).max() * 2.0**e_b) if bmant.size else 0.0
    absm = abs(w_q.matrix)
    row_sum = np.asarray(absm.sum(axis=1)).reshape(-1) if absm.nnz else np.zeros(1)
    worst = float(row_sum.max() * 2.0**w_q.weight_exp * (255.0 if graded else 1.0))
    worst += max_bias_units
    neuron["a_in_max_abs_possible"] = worst
    neuron["a_in_overflow_possible"] = bool(worst > A_IN_MAX)
    return w_q, b_q, neuron


def _shift(a: np.ndarray, exp: int) -> np.ndarray:
    return np.left_shift(a, exp) if exp >= 0 else np.right_shift(a, -exp)


# --------------------------------------------------------------------------- Lava run


try:  # Lava exists only in the Lava interpreter; the helpers above work without it
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
    from lava.proc.lif.models import AbstractPyLifModelFixed
    from lava.proc.lif.process import LIFRefractory

    _HAVE_LAVA = True
except ImportError:  # pragma: no cover - main environment
    _HAVE_LAVA = False

if _HAVE_LAVA:

    @implements(proc=LIFRefractory, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyLifRefractoryModelBitAcc(AbstractPyLifModelFixed):
        """Bit-accurate LIFRefractory (Lava 0.10.0 ships only a float model for it): the
        bit-accurate LIF with the membrane held at 0 for ``refractory_period`` steps."""

        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
        vth: int = LavaPyType(int, np.int32, precision=17)
        refractory_period_end: np.ndarray = LavaPyType(np.ndarray, int)

        def __init__(self, proc_params: dict) -> None:
            super().__init__(proc_params)
            self.refractory_period = proc_params["refractory_period"]
            self.effective_vth = 0

        def scale_threshold(self) -> None:
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True

        def spiking_activation(self) -> np.ndarray:
            return self.v > self.effective_vth

        def subthr_dynamics(self, activation_in: np.ndarray) -> None:
            held = self.refractory_period_end >= self.time_step
            v_old = self.v.copy()
            super().subthr_dynamics(activation_in)
            self.v[held] = v_old[held]

        def reset_voltage(self, spike_vector: np.ndarray) -> None:
            spiked = spike_vector.astype(bool)
            self.refractory_period_end[spiked] = self.time_step + self.refractory_period
            self.v[spiked] = 0

    class SpikeFileSink(AbstractProcess):
        """Records its input as 0/1 for ``buffer`` steps and saves it to ``path`` (.npy) at the
        last step. Lava's RingBuffer sink is read back element by element through
        ``Var.get()`` (over a million channel messages for the example network, ~60 s);
        this sink writes one file from its own process instead."""

        def __init__(self, *, shape: tuple[int, ...], buffer: int, path: str) -> None:
            super().__init__(shape=shape, buffer=buffer, path=str(path))
            self.a_in = InPort(shape=shape)

    class _PyFileSinkBase(PyLoihiProcessModel):
        a_in = None

        def __init__(self, proc_params: dict) -> None:
            super().__init__(proc_params)
            self._buf = np.zeros((*proc_params["shape"], proc_params["buffer"]), np.uint8)

        def run_spk(self) -> None:
            data = self.a_in.recv()
            n_buf = self._buf.shape[-1]
            self._buf[..., (self.time_step - 1) % n_buf] = data != 0
            if self.time_step == n_buf:
                np.save(self.proc_params["path"], self._buf)

    @implements(proc=SpikeFileSink, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("floating_pt")
    class PySpikeFileSinkFloat(_PyFileSinkBase):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    @implements(proc=SpikeFileSink, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PySpikeFileSinkFixed(_PyFileSinkBase):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)


def run_lava_network(
    stages: list[Stage], x: np.ndarray, mode: str, workdir: Path,
    clip_percentile: float = 100.0, log: Any = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Build and run the block-diagonal network; returns (aligned spikes, stats).

    ``workdir`` receives one ``sink_<i>.npy`` per layer from the sink processes.
    """
    if not _HAVE_LAVA:
        raise ExportError("lava-nc is not importable here: run this script with the Lava "
                          "interpreter (make lava-env)")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    fixed = mode == "fixed_pt"
    t0 = time.perf_counter()
    from lava.proc.sparse.process import DelaySparse

    n_steps, n = x.shape[:2]
    n_layers = len(stages)
    steps = n_steps + max(st.depth for st in stages)
    depth = {st.name: st.depth for st in stages}
    flat = x.reshape(n_steps, n, -1).astype(np.float64)
    binary = bool(np.all((flat == 0) | (flat == 1)))
    stats: dict[str, Any] = {"layers": [], "warnings": []}
    input_shift = 0
    if fixed and not binary:
        xmax = float(np.abs(flat).max())
        input_shift = math.floor(math.log2(255.0 / xmax)) if xmax > 0 else 0
        input_shift = max(min(input_shift, 16), -16)
        xq = np.round(flat * 2.0**input_shift)
        err = xq / 2.0**input_shift - flat
        stats["input_quant"] = {
            "shift": input_shift, "max_abs_error": float(np.abs(err).max()),
            "rms_error": float(np.sqrt(np.mean(err**2))),
            "clipped_fraction": float((np.abs(xq) > 2**23 - 1).mean()),
        }
        flat = np.clip(xq, -(2**23) + 1, 2**23 - 1)
    # source buffer: [N * n_in, steps], zero padded after T so the ring never wraps
    src_data = np.zeros((n * flat.shape[2], steps))
    src_data[:, :n_steps] = flat.transpose(1, 2, 0).reshape(n * flat.shape[2], n_steps)
    bias_data = np.zeros((n_layers, steps))
    for li, st in enumerate(stages):
        bias_data[li, st.depth - 1:] = 1.0  # its input first reaches its Sparse then
    dtype = np.int32 if fixed else np.float64
    source = Source(data=src_data.astype(dtype))
    bias_src = Source(data=bias_data.astype(dtype))
    eye = sp.identity(n, format="csr")
    sinks = []
    neurons = []
    qmats: list[tuple[QuantWeights, QuantWeights | None]] = []
    outs: dict[str, Any] = {}  # neuron node -> its s_out port
    for li, st in enumerate(stages):
        info: dict[str, Any] = {
            "name": st.name, "kind": st.kind, "delay": st.depth, "n_neurons": st.n_out,
            "linear_nodes": list(st.linear_nodes), "nnz_per_sample": int(st.matrix.nnz),
            "reset_mechanism": st.reset_mechanism, "reset_substituted": st.reset_substituted,
            "threshold_normalized": st.threshold_normalized,
        }
        graded = any(src is None for src, _ in st.sources) and not binary
        if fixed:
            w_q, b_q, nparams = quantize_stage(st, clip_percentile, 0, graded)
            mat = w_q.matrix
            quant = {"weights": {**w_q.stats, "weight_exp": w_q.weight_exp,
                                 "sign_mode": w_q.sign_mode}, **nparams}
            if b_q is not None:
                quant["bias"] = {**b_q.stats, "weight_exp": b_q.weight_exp,
                                 "sign_mode": b_q.sign_mode}
            info["quant"] = quant
            qmats.append((w_q, b_q))
            du, dv, vth = nparams["du"], nparams["dv"], nparams["vth"]
            bias_mat = None if b_q is None else b_q.matrix
            bias_kw = {} if b_q is None else {
                "weight_exp": b_q.weight_exp, "num_weight_bits": 8,
                "sign_mode": getattr(SignMode, b_q.sign_mode)}
        else:
            mat = st.matrix
            du = 1.0 if st.alpha is None else 1.0 - st.alpha
            dv = 1.0 - st.beta
            vth = st.threshold
            bias_mat = None if st.bias is None else sp.csr_matrix(st.bias.reshape(-1, 1))
            bias_kw = {}
        info.update(du=du, dv=dv, vth=vth)
        shape = (n * st.n_out,)
        if st.refractory:
            neuron = LIFRefractory(shape=shape, du=du, dv=dv, vth=vth, refractory_period=1,
                                   name=f"neu_{st.name}")
            info["lava_process"] = "LIFRefractory(refractory_period=1)"
        else:
            neuron = LIF(shape=shape, du=du, dv=dv, vth=vth, name=f"neu_{st.name}")
            info["lava_process"] = "LIF"
        # one connection process per input branch, all summed into the neurons' a_in; a branch
        # from a shallower source waits (DelaySparse) so every branch arrives in the same step
        col = 0
        info["branches"] = []
        for src, size in st.sources:
            part = sp.csr_matrix(mat[:, col:col + size])
            col += size
            wait = st.depth - 1 - (0 if src is None else depth[src])
            g = src is None and not binary
            kw: dict[str, Any] = {"num_message_bits": 24 if g else 0}
            if fixed:
                kw.update(weight_exp=w_q.weight_exp - (input_shift if g else 0),
                          num_weight_bits=8, sign_mode=getattr(SignMode, w_q.sign_mode))
            weights = sp.kron(eye, part, format="csr")
            tag = "input" if src is None else src
            if wait > 63:
                raise ExportError(f"NIR node {st.name!r}: the branch from {tag!r} must wait "
                                  f"{wait} steps; Loihi 2 delays synapses by 63 at most")
            if wait > 0:
                if g:
                    raise ExportError(f"NIR node {st.name!r}: a delayed branch from the graded "
                                      f"network input is not supported")
                delays = weights.copy()
                delays.data = np.full(delays.nnz, wait, dtype=np.int64)
                conn = DelaySparse(weights=weights, delays=delays, max_delay=wait,
                                   name=f"syn_{st.name}_{tag}", **kw)
            else:
                conn = Sparse(weights=weights, name=f"syn_{st.name}_{tag}", **kw)
            (source.s_out if src is None else outs[src]).connect(conn.s_in)
            conn.a_out.connect(neuron.a_in)
            info["branches"].append({"source": tag, "wait": wait, "nnz_per_sample": part.nnz})
        if bias_mat is not None:
            # column li of an (n_out, L) matrix: only channel li of the bias source reaches it
            col = sp.csr_matrix(
                (np.tile(bias_mat.toarray().reshape(-1), n), (np.arange(n * st.n_out),
                                                               np.full(n * st.n_out, li))),
                shape=(n * st.n_out, n_layers))
            col.eliminate_zeros()
            bconn = Sparse(weights=col, name=f"bias_{st.name}", **bias_kw)
            bias_src.s_out.connect(bconn.s_in)
            bconn.a_out.connect(neuron.a_in)
        sink_path = Path(workdir) / f"sink_{li}.npy"
        sink_path.unlink(missing_ok=True)
        sink = SpikeFileSink(shape=shape, buffer=steps, path=str(sink_path))
        neuron.s_out.connect(sink.a_in)
        sinks.append(sink_path)
        neurons.append(neuron)
        outs[st.name] = neuron.s_out
        if st.reset_substituted:
            stats["warnings"].append(
                f"layer {st.name!r} uses {st.reset_mechanism} reset; Loihi resets to zero, so "
                "Lava runs it with zero reset")
        stats["layers"].append(info)
    if not any(st.bias is not None for st in stages):
        bias_src = None  # unconnected: leave it out of the run
    t_build = time.perf_counter()
    exceptions: dict = {SpikeFileSink: PySpikeFileSinkFixed if fixed else PySpikeFileSinkFloat}
    if fixed:
        exceptions[LIFRefractory] = PyLifRefractoryModelBitAcc
    cfg = Loihi2SimCfg(select_tag=mode, exception_proc_model_map=exceptions)
    if log:
        log(f"running {steps} Lava steps, {n} samples, {n_layers} layers ({mode})")
    runner = neurons[-1]
    spikes: dict[str, np.ndarray] = {}
    try:
        with warnings.catch_warnings():
            # Lava searches the script's module for models and warns it cannot import it;
            # the models here are given explicitly through exception_proc_model_map.
            warnings.filterwarnings("ignore", message="Cannot import module")
            runner.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
    finally:
        runner.stop()
    raw = []
    for path in sinks:
        if not path.exists():
            raise ExportError(f"Lava run ended without writing {path.name}: see stderr")
        raw.append(np.load(path))
        path.unlink()
    for st, data in zip(stages, raw, strict=True):
        d = st.depth
        aligned = data[:, d : d + n_steps]  # sink index t + depth for model step t < T
        arr = aligned.T.reshape((n_steps, n, *st.shape)) != 0
        spikes[st.name] = arr.astype(np.uint8)
    if fixed:
        x_in = flat.reshape(n_steps * n, -1)  # quantized graded input, or 0/1 spikes
        for li, (st, (w_q, b_q)) in enumerate(zip(stages, qmats, strict=True)):
            a_in, col = 0.0, 0
            acc: np.ndarray | int = 0
            for src, size in st.sources:
                g = src is None and not binary
                inp_b = (x_in if src is None else
                         spikes[src].reshape(n_steps * n, -1).astype(np.int64))
                part = w_q.matrix[:, col:col + size]
                col += size
                if part.nnz and inp_b.size:
                    prod = np.asarray(part.astype(np.int64) @ inp_b.astype(np.int64).T)
                    acc = acc + _shift(prod, w_q.weight_exp - (input_shift if g else 0))
            if b_q is not None:
                acc = acc + _shift(b_q.matrix.toarray().astype(np.int64), b_q.weight_exp)
            if isinstance(acc, np.ndarray) and acc.size:
                a_in = float(np.abs(acc).max())
            q = stats["layers"][li]["quant"]
            q["a_in_max_abs_observed"] = a_in
            q["a_in_overflow_observed"] = bool(a_in > A_IN_MAX)
    t_end = time.perf_counter()
    stats["lava_steps"] = steps
    stats["timings"] = {"build_s": t_build - t0, "lava_s": t_end - t_build}
    return spikes, stats


# --------------------------------------------------------------------------- CLI


def _versions() -> dict:
    from importlib.metadata import version

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for pkg in ("lava-nc", "nir", "scipy"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nir", required=True, type=Path)
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--mode", required=True, choices=("floating_pt", "fixed_pt"))
    ap.add_argument("--stats", type=Path, default=None)
    ap.add_argument("--clip-percentile", type=float, default=100.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda m: print(f"lava_runner: {m}", file=sys.stderr)) if args.verbose else None
    t0 = time.perf_counter()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        import nir

        graph = nir.read(str(args.nir))
        with np.load(args.input) as f:
            x = np.asarray(f["x"], dtype=np.float32)
        in_shape = nir_sim.node_shape(graph.nodes[nir_sim.topological_order(graph)[0]])
        if x.ndim < 2 or tuple(x.shape[2:]) != in_shape:
            raise ExportError(f"input x has shape {x.shape}; expected [T, N, *{in_shape}]")
        stages, ignored = build_stages(graph)
        spikes, stats = run_lava_network(
            stages, x, args.mode, args.output.parent, args.clip_percentile, log)
    except ExportError as exc:
        print(f"lava_runner: error: {exc}", file=sys.stderr)
        return 2
    stats.update(mode=args.mode, n_samples=int(x.shape[1]), timesteps=int(x.shape[0]),
                 ignored_nodes=ignored, versions=_versions())
    stats["timings"]["total_s"] = time.perf_counter() - t0
    order = [st.name for st in stages]
    tmp = args.output.with_name(args.output.name + ".tmp.npz")
    np.savez_compressed(tmp, order=np.array(order),
                        **{f"spikes:{k}": v for k, v in spikes.items()})
    stats_path = args.stats or args.output.with_suffix(".json")
    tmp_json = stats_path.with_name(stats_path.name + ".tmp")
    tmp_json.write_text(json.dumps(stats, indent=1, default=float))
    tmp.replace(args.output)
    tmp_json.replace(stats_path)
    if log:
        log(f"done in {stats['timings']['total_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
