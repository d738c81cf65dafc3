"""Run a NIR graph on Lava's Loihi 2 simulator (lava-nc 0.10.0): a script for the Lava interpreter.

    python lava_runner.py --nir model.nir --input in.npz --output out.npz \
        --mode floating_pt|fixed_pt [--stats out.json] [--clip-percentile 100] \
        [--reference ref.npz --max-nnz N] [--verbose]

Runs inside the Python 3.10 / numpy<2 interpreter made by ``scripts/lava-env.sh``; the main
environment talks to it through files only (``exporters/lava_export.py``). The graph-to-matrix
and quantization helpers live in ``lava_stages.py`` (numpy, scipy and nir only, so they are
importable and tested in the main environment too); this file holds the Lava processes, the
network build and run, the sinks and the CLI, and imports Lava inside ``run_lava_network``.

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

Layer by layer (``--reference ref.npz --max-nnz N``)
----------------------------------------------------
A network whose stored synapses over all N samples exceed ``--max-nnz`` (a VGG/ResNet-19
export holds 90-500M per sample: the unrolled convolutions) runs one layer at a time when the
reference spikes of every neuron node are given: each layer's own Lava run reads its sources'
spikes from RingBuffers (the network input as above) at depth 0, so it needs no DelaySparse and
one step of delay, and its samples go in chunks of at most ``--max-nnz`` synapses (a layer that
reads the network input takes every sample at once: fixed_pt quantizes that input over all of
them). Memory is then one layer's synapses, not the network's; each layer answers the
reference's inputs, so an error in one layer does not reach the next. ``out.json`` says
``"method": "layers"`` (else ``"network"``) and how many Lava runs it took (``"runs"``).

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
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

if __package__:  # imported from the main environment (slamp_deploy.exporters.lava_runner)
    from . import lava_stages, nir_graph, nir_nodes
    from ._atomic import write_atomically
else:  # run as a script by the Lava interpreter: its sibling modules sit next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import lava_stages  # type: ignore[no-redef]
    import nir_graph  # type: ignore[no-redef]
    import nir_nodes  # type: ignore[no-redef]
    from _atomic import write_atomically  # type: ignore[no-redef]
ExportError = nir_graph.ExportError
Stage = lava_stages.Stage
QuantWeights = lava_stages.QuantWeights


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


@dataclass(slots=True)
class _Net:
    """The Lava network being built for N samples: sources, processes, sinks and the record."""

    n: int
    steps: int
    binary: bool
    fixed: bool
    input_shift: int
    clip_percentile: float
    source: Any
    bias_src: Any
    workdir: Path
    stats: dict[str, Any]
    outs: dict[str, Any] = field(default_factory=dict)  # neuron node -> its s_out port
    depth: dict[str, int] = field(default_factory=dict)
    sinks: list[Path] = field(default_factory=list)
    neurons: list[Any] = field(default_factory=list)
    qmats: list[tuple[QuantWeights, QuantWeights | None]] = field(default_factory=list)
    quant: list[lava_stages.QuantStats] = field(default_factory=list)
    layers: list[lava_stages.LayerStats] = field(default_factory=list)


def _fixed_params(net: _Net, st: Stage) -> tuple[Any, ...]:
    """(weights, du, dv, vth, bias matrix or None, bias Sparse kwargs) in Loihi fixed point."""
    from lava.utils.weightutils import SignMode

    graded = any(src is None for src, _ in st.sources) and not net.binary
    w_q, b_q, nparams = lava_stages.quantize_stage(st, net.clip_percentile, 0, graded)
    net.quant.append(lava_stages.QuantStats.of(w_q, b_q, nparams))
    net.qmats.append((w_q, b_q))
    bias_kw = {} if b_q is None else {
        "weight_exp": b_q.weight_exp, "num_weight_bits": 8,
        "sign_mode": getattr(SignMode, b_q.sign_mode)}
    return (w_q.matrix, nparams["du"], nparams["dv"], nparams["vth"],
            None if b_q is None else b_q.matrix, bias_kw)


def _float_params(st: Stage) -> tuple[Any, ...]:
    du = 1.0 if st.alpha is None else 1.0 - st.alpha
    bias_mat = None if st.bias is None else sp.csr_matrix(st.bias.reshape(-1, 1))
    return st.matrix, du, 1.0 - st.beta, st.threshold, bias_mat, {}


def _neuron_process(st: Stage, shape: tuple[int, ...], du: Any, dv: Any, vth: Any
                    ) -> tuple[Any, str]:
    from lava.proc.lif.process import LIF

    if st.refractory:
        return LIFRefractory(shape=shape, du=du, dv=dv, vth=vth, refractory_period=1,
                             name=f"neu_{st.name}"), "LIFRefractory(refractory_period=1)"
    return LIF(shape=shape, du=du, dv=dv, vth=vth, name=f"neu_{st.name}"), "LIF"


def _connect_branches(net: _Net, st: Stage, mat: sp.csr_matrix, neuron: Any
                      ) -> list[dict[str, Any]]:
    """One connection process per input branch, all summed into the neurons' a_in; a branch
    from a shallower source waits (DelaySparse) so every branch arrives in the same step."""
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode

    eye = sp.identity(net.n, format="csr")
    col = 0
    branches = []
    for src, size in st.sources:
        part = mat if size == mat.shape[1] else sp.csr_matrix(mat[:, col:col + size])
        col += size
        wait = st.depth - 1 - (0 if src is None else net.depth[src])
        g = src is None and not net.binary
        kw: dict[str, Any] = {"num_message_bits": 24 if g else 0}
        if net.fixed:
            w_q = net.qmats[-1][0]
            kw.update(weight_exp=w_q.weight_exp - (net.input_shift if g else 0),
                      num_weight_bits=8, sign_mode=getattr(SignMode, w_q.sign_mode))
        # one sample: the matrix itself (kron would copy hundreds of millions of synapses)
        weights = part if net.n == 1 else sp.kron(eye, part, format="csr")
        tag = "input" if src is None else src
        if wait > lava_stages.MAX_DELAY:
            raise ExportError(f"NIR node {st.name!r}: the branch from {tag!r} must wait "
                              f"{wait} steps; Loihi 2 delays synapses by "
                              f"{lava_stages.MAX_DELAY} at most")
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
        (net.source.s_out if src is None else net.outs[src]).connect(conn.s_in)
        conn.a_out.connect(neuron.a_in)
        # what the process holds: Sparse keeps a CSR matrix, so pruned (zero) weights are not
        # stored and cost no synaptic operation; the energy estimate assumes exactly that
        branches.append({"source": tag, "wait": wait, "nnz_per_sample": part.nnz,
                         "process": type(conn).__name__,
                         "stored_weights": int(conn.weights.init.nnz)})
    return branches


def _connect_bias(net: _Net, st: Stage, li: int, n_layers: int, bias_mat: sp.csr_matrix,
                  bias_kw: dict[str, Any], neuron: Any) -> None:
    from lava.proc.sparse.process import Sparse

    n = net.n
    # column li of an (n_out, L) matrix: only channel li of the bias source reaches it
    col = sp.csr_matrix(
        (np.tile(bias_mat.toarray().reshape(-1), n), (np.arange(n * st.n_out),
                                                       np.full(n * st.n_out, li))),
        shape=(n * st.n_out, n_layers))
    col.eliminate_zeros()
    bconn = Sparse(weights=col, name=f"bias_{st.name}", **bias_kw)
    net.bias_src.s_out.connect(bconn.s_in)
    bconn.a_out.connect(neuron.a_in)


def _add_layer(net: _Net, st: Stage, li: int, n_layers: int) -> None:
    if net.fixed:
        mat, du, dv, vth, bias_mat, bias_kw = _fixed_params(net, st)
    else:
        mat, du, dv, vth, bias_mat, bias_kw = _float_params(st)
    shape = (net.n * st.n_out,)
    neuron, process = _neuron_process(st, shape, du, dv, vth)
    branches = _connect_branches(net, st, mat, neuron)
    if bias_mat is not None:
        _connect_bias(net, st, li, n_layers, bias_mat, bias_kw, neuron)
    sink_path = Path(net.workdir) / f"sink_{li}.npy"
    sink_path.unlink(missing_ok=True)
    sink = SpikeFileSink(shape=shape, buffer=net.steps, path=str(sink_path))
    neuron.s_out.connect(sink.a_in)
    net.sinks.append(sink_path)
    net.neurons.append(neuron)
    net.outs[st.name] = neuron.s_out
    net.depth[st.name] = st.depth
    if st.reset_substituted:
        net.stats["warnings"].append(
            f"layer {st.name!r} uses {st.reset_mechanism} reset; Loihi resets to zero, so "
            "Lava runs it with zero reset")
    net.layers.append(lava_stages.LayerStats(
        name=st.name, kind=st.kind, delay=st.depth, n_neurons=st.n_out,
        linear_nodes=st.linear_nodes, nnz_per_sample=int(st.matrix.nnz),
        reset_mechanism=st.reset_mechanism, reset_substituted=st.reset_substituted,
        threshold_normalized=st.threshold_normalized,
        quant=net.quant[-1] if net.fixed else None, du=du, dv=dv, vth=vth,
        lava_process=process, branches=tuple(branches)))


def _sources(stages: list[Stage], flat: np.ndarray, steps: int, dtype: Any) -> tuple[Any, Any]:
    """The input RingBuffer ([N * n_in, steps], zero padded after T so the ring never wraps)
    and the bias RingBuffer (channel l on from the step layer l's input reaches its Sparse)."""
    from lava.proc.io.source import RingBuffer as Source

    n_steps, n = flat.shape[:2]
    src_data = np.zeros((n * flat.shape[2], steps))
    src_data[:, :n_steps] = flat.transpose(1, 2, 0).reshape(n * flat.shape[2], n_steps)
    bias_data = np.zeros((len(stages), steps))
    for li, st in enumerate(stages):
        bias_data[li, st.depth - 1:] = 1.0  # its input first reaches its Sparse then
    return Source(data=src_data.astype(dtype)), Source(data=bias_data.astype(dtype))


def _run(net: _Net, mode: str, log: Any) -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    exceptions: dict = {SpikeFileSink: PySpikeFileSinkFixed if net.fixed
                        else PySpikeFileSinkFloat}
    if net.fixed:
        exceptions[LIFRefractory] = PyLifRefractoryModelBitAcc
    cfg = Loihi2SimCfg(select_tag=mode, exception_proc_model_map=exceptions)
    if log:
        log(f"running {net.steps} Lava steps, {net.n} samples, {len(net.neurons)} layers "
            f"({mode})")
    runner = net.neurons[-1]
    try:
        with warnings.catch_warnings():
            # Lava searches the script's module for models and warns it cannot import it;
            # the models here are given explicitly through exception_proc_model_map.
            warnings.filterwarnings("ignore", message="Cannot import module")
            runner.run(condition=RunSteps(num_steps=net.steps), run_cfg=cfg)
    finally:
        runner.stop()


def _read_sinks(net: _Net, stages: list[Stage], n_steps: int) -> dict[str, np.ndarray]:
    raw = []
    for path in net.sinks:
        if not path.exists():
            raise ExportError(f"Lava run ended without writing {path.name}: see stderr")
        raw.append(np.load(path))
        path.unlink()
    spikes: dict[str, np.ndarray] = {}
    for st, data in zip(stages, raw, strict=True):
        d = st.depth
        aligned = data[:, d : d + n_steps]  # sink index t + depth for model step t < T
        arr = aligned.T.reshape((n_steps, net.n, *st.shape)) != 0
        spikes[st.name] = arr.astype(np.uint8)
    return spikes


def run_lava_network(
    stages: list[Stage], x: np.ndarray, mode: str, workdir: Path,
    clip_percentile: float = 100.0, log: Any = None,
    fed: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Build and run the block-diagonal network; returns (aligned spikes, stats).

    ``workdir`` receives one ``sink_<i>.npy`` per layer from the sink processes. ``fed``:
    neuron nodes outside ``stages`` whose spikes [T, N, *shape] come from a RingBuffer at
    depth 0 (the layer-by-layer run feeds each layer its sources' reference spikes).
    """
    if not _HAVE_LAVA:
        raise ExportError("lava-nc is not importable here: run this script with the Lava "
                          "interpreter (make lava-env)")
    fixed = mode == "fixed_pt"
    t0 = time.perf_counter()
    n_steps, n = x.shape[:2]
    steps = n_steps + max(st.depth for st in stages)
    flat = x.reshape(n_steps, n, -1).astype(np.float64)
    binary = bool(np.all((flat == 0) | (flat == 1)))
    stats: dict[str, Any] = {"layers": [], "warnings": []}
    input_shift = 0
    if fixed and not binary:
        flat, input_shift, stats["input_quant"] = lava_stages.quantize_input(flat)
    source, bias_src = _sources(stages, flat, steps, np.int32 if fixed else np.float64)
    net = _Net(n=n, steps=steps, binary=binary, fixed=fixed, input_shift=input_shift,
               clip_percentile=clip_percentile, source=source, bias_src=bias_src,
               workdir=Path(workdir), stats=stats)
    for src, spk in (fed or {}).items():
        net.outs[src] = _fed_source(spk, steps, np.int32 if fixed else np.float64)
        net.depth[src] = 0
    for li, st in enumerate(stages):
        _add_layer(net, st, li, len(stages))
    if not any(st.bias is not None for st in stages):
        net.bias_src = None  # unconnected: leave it out of the run
    t_build = time.perf_counter()
    _run(net, mode, log)
    spikes = _read_sinks(net, stages, n_steps)
    layers = net.layers
    if fixed:
        x_in = flat.reshape(n_steps * n, -1)  # quantized graded input, or 0/1 spikes
        seen = {**(fed or {}), **spikes}
        layers = [
            dataclasses.replace(layer, quant=dataclasses.replace(
                layer.quant, a_in_max_abs_observed=lava_stages.observed_a_in(
                    st, w_q, b_q, x_in, seen, binary, input_shift)))
            for layer, st, (w_q, b_q) in zip(net.layers, stages, net.qmats, strict=True)]
    stats["layers"] = [layer.to_json() for layer in layers]
    t_end = time.perf_counter()
    stats["lava_steps"] = steps
    stats["timings"] = {"build_s": t_build - t0, "lava_s": t_end - t_build}
    return spikes, stats


def _fed_source(spikes: np.ndarray, steps: int, dtype: Any) -> Any:
    """A RingBuffer replaying ``spikes`` [T, N, *shape] (zero padded to ``steps``); its s_out."""
    from lava.proc.io.source import RingBuffer as Source

    n_steps, n = spikes.shape[:2]
    data = np.zeros((n * int(np.prod(spikes.shape[2:])), steps))
    data[:, :n_steps] = spikes.reshape(n_steps, n, -1).transpose(1, 2, 0).reshape(-1, n_steps)
    return Source(data=data.astype(dtype)).s_out


def network_nnz(stages: list[Stage]) -> int:
    """Stored synapses of one sample's copy of the whole network (every branch and bias)."""
    return sum(int(st.matrix.nnz) + (0 if st.bias is None else int(st.n_out)) for st in stages)


def run_lava_layers(
    stages: Iterable[Stage], x: np.ndarray, mode: str, workdir: Path,
    reference: dict[str, np.ndarray], max_nnz: int, clip_percentile: float = 100.0,
    log: Any = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Each layer in its own Lava run, fed its sources' spikes from ``reference`` (the float64
    model's) and the network input: Lava's memory is one layer's synapses times the samples of
    a run, not the whole network's. A layer that reads only other layers runs its samples in
    chunks of at most ``max_nnz`` stored synapses; a layer that reads the network input runs
    every sample at once (fixed_pt quantizes that input over all samples, as the whole-network
    run does). Spikes per layer are that layer's answer to the reference's inputs, so a
    layer's error does not reach the next one."""
    n = int(x.shape[1])
    parts: dict[str, list[np.ndarray]] = {}
    stats: dict[str, Any] = {"layers": [], "warnings": [], "runs": 0}
    build_s = lava_s = 0.0
    for st in stages:  # one stage's synapses alive at a time (a StageWalk builds them lazily)
        missing = [src for src, _ in st.sources if src is not None and src not in reference]
        if missing:
            raise ExportError(f"the reference spikes have no neuron node {missing[0]!r}: give "
                              f"every neuron node's spikes")
        parts[st.name] = []
        one = dataclasses.replace(st, depth=1)
        reads_input = any(src is None for src, _ in st.sources)
        chunk = n if reads_input else max(1, min(n, max_nnz // max(network_nnz([one]), 1)))
        layer_stats: dict[str, Any] | None = None
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            fed = {src: np.asarray(reference[src][:, a:b]) for src, _ in st.sources
                   if src is not None}
            if log:
                log(f"layer {st.name}: samples {a}-{b - 1} of {n}")
            spk, sta = run_lava_network([one], x[:, a:b], mode, workdir, clip_percentile,
                                        None, fed)
            parts[st.name].append(spk[st.name])
            stats["runs"] += 1
            build_s += sta["timings"]["build_s"]
            lava_s += sta["timings"]["lava_s"]
            stats["warnings"].extend(w for w in sta["warnings"] if w not in stats["warnings"])
            if reads_input and "input_quant" in sta:  # fixed_pt: the input layer's own
                stats["input_quant"] = sta["input_quant"]  # (other runs quantize unread input)
            layer_stats = _merge_layer(layer_stats, sta["layers"][0])
        assert layer_stats is not None
        layer_stats["delay"] = st.depth  # the whole network's delay, as its record says
        stats["layers"].append(layer_stats)
        del one, st
    spikes = {k: np.concatenate(v, axis=1) for k, v in parts.items()}
    stats["lava_steps"] = int(x.shape[0]) + 1
    stats["timings"] = {"build_s": build_s, "lava_s": lava_s}  # summed over the runs
    return spikes, stats


def _merge_layer(acc: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One layer's record over its sample chunks: the same weights, the largest a_in seen."""
    if acc is None:
        return new
    q_a, q_n = acc.get("quant"), new.get("quant")
    if q_a is not None and q_n is not None:
        q_a["a_in_max_abs_observed"] = max(q_a["a_in_max_abs_observed"],
                                           q_n["a_in_max_abs_observed"])
        q_a["a_in_overflow_observed"] = bool(q_a["a_in_overflow_observed"]
                                             or q_n["a_in_overflow_observed"])
    return acc


# --------------------------------------------------------------------------- CLI


def _run_cli(graph: Any, x: np.ndarray, args: argparse.Namespace, log: Any
             ) -> tuple[dict[str, np.ndarray], dict, list[str]]:
    """The whole network in one Lava run, or layer by layer once its synapses for every sample
    exceed --max-nnz and the reference spikes are given (the layers are then built, run and
    dropped one at a time). Returns the spikes, the stats and the ignored trailing nodes."""
    walk = lava_stages.StageWalk(graph)
    stages = iter(walk)
    n = int(x.shape[1])
    held: list[Stage] = []
    nnz = 0
    big = False
    for st in stages:
        held.append(st)
        nnz += network_nnz([st]) * n
        if args.reference is not None and args.max_nnz is not None and nnz > args.max_nnz:
            big = True
            break
    if not big:
        spikes, stats = run_lava_network(held, x, args.mode, args.output.parent,
                                         args.clip_percentile, log)
        stats["method"] = "network"
    else:
        with np.load(args.reference) as f:
            reference = {k.split(":", 1)[1]: f[k] for k in f.files if k.startswith("spikes:")}

        def stream() -> Iterator[Stage]:
            while held:
                yield held.pop(0)
            yield from stages

        spikes, stats = run_lava_layers(stream(), x, args.mode, args.output.parent, reference,
                                        args.max_nnz, args.clip_percentile, log)
        stats["method"] = "layers"
    stats.update(max_nnz=args.max_nnz)
    return spikes, stats, walk.ignored()


def _versions() -> dict:
    from importlib.metadata import version

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for pkg in ("lava-nc", "nir", "scipy"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


def _write_outputs(out: Path, stats_path: Path, stats: dict, spikes: dict[str, np.ndarray],
                   order: list[str]) -> None:
    """The stats, then the spikes, each atomically (the host reads both once out.npz exists)."""
    def spikes_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the name
            np.savez_compressed(f, order=np.array(order),
                                **{f"spikes:{k}": v for k, v in spikes.items()})

    write_atomically(stats_path, lambda tmp: Path(tmp).write_text(
        json.dumps(stats, indent=1, default=float)))
    write_atomically(out, spikes_npz)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nir", required=True, type=Path)
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--mode", required=True, choices=("floating_pt", "fixed_pt"))
    ap.add_argument("--stats", type=Path, default=None)
    ap.add_argument("--clip-percentile", type=float, default=100.0)
    ap.add_argument("--reference", type=Path, default=None,
                    help="npz of spikes:<node> [T, N, *shape] for every neuron node (the float64 "
                         "model's): lets a network over --max-nnz run layer by layer")
    ap.add_argument("--max-nnz", type=int, default=None,
                    help="stored synapses (all samples' copies) one Lava run may hold")
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
        order, _ = nir_graph.check_nir_graph(graph, nir_nodes.NODES)
        in_shape = nir_graph.node_shape(graph.nodes[order[0]])
        if x.ndim < 2 or tuple(x.shape[2:]) != in_shape:
            raise ExportError(f"input x has shape {x.shape}; expected [T, N, *{in_shape}]")
        spikes, stats, ignored = _run_cli(graph, x, args, log)
    except ExportError as exc:
        print(f"lava_runner: error: {exc}", file=sys.stderr)
        return 2
    stats.update(mode=args.mode, n_samples=int(x.shape[1]), timesteps=int(x.shape[0]),
                 ignored_nodes=ignored, versions=_versions())
    stats["timings"]["total_s"] = time.perf_counter() - t0
    _write_outputs(args.output, args.stats or args.output.with_suffix(".json"), stats, spikes,
                   list(spikes))
    if log:
        log(f"done in {stats['timings']['total_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
