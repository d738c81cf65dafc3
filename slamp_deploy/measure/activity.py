"""Exact connectivity and activity counts of a spiking network on real data.

Everything here is a count, taken from the weights and from the spikes the model produced; ratios
and per-sample figures are derived from the counts and rounded only for display. The names and
definitions follow NeuroBench 2.3 where one exists (``ConnectionSparsity``, ``ActivationSparsity``,
``SynapticOperations`` with ``Effective_MACs`` / ``Effective_ACs`` / ``Dense``, ``Footprint``,
``ParameterCount``), so a number here can be compared with a published NeuroBench number:

* a weight is *kept* when it is non-zero (NeuroBench binarises the weight itself, so masks must be
  permanent, i.e. pruned weights exact zeros, before counting: the pipeline's are);
* a synaptic operation is one (non-zero input, kept synapse) pair: every input event times its kept
  outgoing synapses. The per-input fan-out is the fit check's own exact count
  (:func:`slamp_deploy.geometry.layer_stats`: padding, stride, dilation and groups included), not
  an estimate;
* an input whose values all lie in {-1, 0, 1} is *spiking* and its operations are accumulates
  (``Effective_ACs``); any other input (the direct-encoded first layer, average-pooled spikes) is
  graded and its operations are multiply-accumulates (``Effective_MACs``). NeuroBench decides this
  per recorded batch; here it is decided per sample and step (NeuroBench with batch size 1), so the
  result does not depend on the batch size;
* ``Dense`` is the same count with every input and every weight non-zero: it ignores both kinds of
  sparsity. Per sample, summed over timesteps, like NeuroBench. The ANN of the same shape does one
  step of it (``ann_macs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slamp_deploy.data import Dataset, encode
from slamp_deploy.errors import DataError
from slamp_deploy.fit.from_graph import conv_attributes
from slamp_deploy.geometry import LayerGeometry, layer_stats, with_masks
from slamp_deploy.model.graph import NEURON_KINDS, Layer, Op, SpikingGraph, reset_state
from slamp_deploy.model.runner import run

__all__ = [
    "ActivityReport",
    "LayerActivity",
    "NeuronActivity",
    "connectivity",
    "dense_weights",
    "footprint_bytes",
    "measure",
    "parameter_count",
]


@dataclass(frozen=True)
class LayerActivity:
    """One synaptic layer: static connectivity under its current weights, and activity counts.

    Activity counts are totals over all measured samples, one entry per timestep.
    """

    name: str
    kind: str  # linear | conv1d | conv2d
    neuron: str | None  # the neuron op this layer drives (None: a non-spiking readout)
    weight_shape: tuple[int, ...]
    weights_total: int
    weights_kept: int  # non-zero weights
    inputs: int  # input units per step (C*H*W for conv)
    outputs: int  # output units of the synaptic op per step
    neurons: int  # units of the neuron op it drives (0 for a non-spiking readout)
    synapses_total: int  # dense connections per step (padding-aware): NeuroBench Dense per step
    synapses_kept: int  # kept connections per step (sum of the fan-in of every output unit)
    fan_in_max: int
    fan_out_max: int
    samples: int
    input_events: tuple[int, ...]  # non-zero input values, per step, all samples
    synops_ac: tuple[int, ...]  # effective accumulates (spiking inputs), per step, all samples
    synops_mac: tuple[int, ...]  # effective multiply-accumulates (graded inputs), per step

    @property
    def timesteps(self) -> int:
        return len(self.input_events)

    @property
    def connection_sparsity(self) -> float:
        """Zero weights / all weights (NeuroBench ConnectionSparsity of this layer alone)."""
        return 1.0 - self.weights_kept / self.weights_total

    @property
    def fan_in_mean(self) -> float:
        """Kept synapses per output unit (padding-aware for conv)."""
        return self.synapses_kept / self.outputs

    @property
    def fan_out_mean(self) -> float:
        """Kept synapses per input unit."""
        return self.synapses_kept / self.inputs

    @property
    def effective_acs(self) -> float:
        """Per sample, summed over timesteps."""
        return sum(self.synops_ac) / self.samples

    @property
    def effective_macs(self) -> float:
        return sum(self.synops_mac) / self.samples

    @property
    def synops(self) -> float:
        """Effective ACs + MACs per sample."""
        return (sum(self.synops_ac) + sum(self.synops_mac)) / self.samples

    @property
    def dense(self) -> int:
        """NeuroBench Dense per sample: every connection at every step."""
        return self.synapses_total * self.timesteps

    @property
    def input_rate_per_step(self) -> tuple[float, ...]:
        """Fraction of input values that are non-zero, per step."""
        return tuple(e / (self.inputs * self.samples) for e in self.input_events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "neuron": self.neuron,
            "weight_shape": list(self.weight_shape), "weights_total": self.weights_total,
            "weights_kept": self.weights_kept, "connection_sparsity": self.connection_sparsity,
            "inputs": self.inputs, "outputs": self.outputs, "neurons": self.neurons,
            "synapses_total": self.synapses_total, "synapses_kept": self.synapses_kept,
            "fan_in_max": self.fan_in_max, "fan_in_mean": self.fan_in_mean,
            "fan_out_max": self.fan_out_max, "fan_out_mean": self.fan_out_mean,
            "input_events_per_step": list(self.input_events),
            "input_rate_per_step": list(self.input_rate_per_step),
            "synops_ac_per_step": list(self.synops_ac),
            "synops_mac_per_step": list(self.synops_mac),
            "effective_acs": self.effective_acs, "effective_macs": self.effective_macs,
            "synops": self.synops, "dense": self.dense,
        }


@dataclass(frozen=True)
class NeuronActivity:
    """One neuron op: spikes per step, totals over all measured samples."""

    name: str
    kind: str  # leaky | synaptic
    neurons: int
    samples: int
    spikes: tuple[int, ...]  # non-zero outputs per step, all samples

    @property
    def timesteps(self) -> int:
        return len(self.spikes)

    @property
    def spikes_per_step(self) -> tuple[float, ...]:
        """Per sample."""
        return tuple(s / self.samples for s in self.spikes)

    @property
    def spikes_per_sample(self) -> float:
        return sum(self.spikes) / self.samples

    @property
    def firing_rate_per_step(self) -> tuple[float, ...]:
        """Spikes per neuron per step."""
        return tuple(s / (self.neurons * self.samples) for s in self.spikes)

    @property
    def firing_rate(self) -> float:
        return sum(self.spikes) / (self.neurons * self.samples * self.timesteps)

    @property
    def neuron_updates(self) -> int:
        """Per sample: every neuron is updated at every step (time-driven, an upper bound)."""
        return self.neurons * self.timesteps

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "neurons": self.neurons,
            "spikes_per_step_total": list(self.spikes),
            "spikes_per_step": list(self.spikes_per_step),
            "spikes_per_sample": self.spikes_per_sample,
            "firing_rate_per_step": list(self.firing_rate_per_step),
            "firing_rate": self.firing_rate, "neuron_updates": self.neuron_updates,
        }


@dataclass(frozen=True)
class ActivityReport:
    """The whole model measured on ``samples`` samples of ``timesteps`` steps."""

    label: str  # "dense" | "pruned" | free text
    samples: int
    timesteps: int
    layers: tuple[LayerActivity, ...]
    neuron_layers: tuple[NeuronActivity, ...]
    parameter_count: int  # NeuroBench ParameterCount: numel of every parameter, zeros included
    parameters_nonzero: int
    footprint_bytes: int  # NeuroBench Footprint, with neuron state cleared (see footprint_bytes)

    @property
    def weights_total(self) -> int:
        return sum(la.weights_total for la in self.layers)

    @property
    def weights_kept(self) -> int:
        return sum(la.weights_kept for la in self.layers)

    @property
    def connection_sparsity(self) -> float:
        """NeuroBench ConnectionSparsity: zero weights / weights over Linear and Conv layers."""
        return 1.0 - self.weights_kept / self.weights_total

    @property
    def activation_sparsity(self) -> float:
        """NeuroBench ActivationSparsity: zero outputs / outputs of every spiking neuron layer,
        over all steps and samples."""
        total = sum(n.neurons * n.samples * n.timesteps for n in self.neuron_layers)
        nonzero = sum(sum(n.spikes) for n in self.neuron_layers)
        return 1.0 - nonzero / total if total else 0.0

    @property
    def effective_acs(self) -> float:
        return sum(sum(la.synops_ac) for la in self.layers) / self.samples

    @property
    def effective_macs(self) -> float:
        return sum(sum(la.synops_mac) for la in self.layers) / self.samples

    @property
    def synops(self) -> float:
        """Effective ACs + MACs, per sample, summed over steps."""
        return self.effective_acs + self.effective_macs

    @property
    def dense(self) -> int:
        """NeuroBench SynapticOperations Dense, per sample."""
        return sum(la.dense for la in self.layers)

    @property
    def ann_macs(self) -> int:
        """MACs of one inference of an ANN of the same shape (dense weights, one step)."""
        return sum(la.synapses_total for la in self.layers)

    @property
    def spikes(self) -> float:
        """Spikes per sample, all neuron layers, all steps."""
        return sum(n.spikes_per_sample for n in self.neuron_layers)

    @property
    def neuron_updates(self) -> int:
        return sum(n.neuron_updates for n in self.neuron_layers)

    def neuron_layer(self, name: str) -> NeuronActivity:
        for n in self.neuron_layers:
            if n.name == name:
                return n
        raise KeyError(name)

    def neurobench(self) -> dict[str, Any]:
        """The figures under NeuroBench's metric names (unrounded; NeuroBench rounds
        ConnectionSparsity to 4 decimals)."""
        return {
            "ConnectionSparsity": self.connection_sparsity,
            "ActivationSparsity": self.activation_sparsity,
            "SynapticOperations": {"Effective_MACs": self.effective_macs,
                                   "Effective_ACs": self.effective_acs, "Dense": self.dense},
            "Footprint": self.footprint_bytes,
            "ParameterCount": self.parameter_count,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "samples": self.samples, "timesteps": self.timesteps,
            "neurobench": self.neurobench(),
            "totals": {
                "weights_total": self.weights_total, "weights_kept": self.weights_kept,
                "parameters_nonzero": self.parameters_nonzero,
                "synops": self.synops, "ann_macs": self.ann_macs, "spikes": self.spikes,
                "neuron_updates": self.neuron_updates,
            },
            "layers": [la.to_dict() for la in self.layers],
            "neuron_layers": [n.to_dict() for n in self.neuron_layers],
        }


# --------------------------------------------------------------------------------------------
# Static connectivity


@dataclass(frozen=True, eq=False)
class _Connectivity:
    fan_in: torch.Tensor  # int64 [outputs]
    fan_out: torch.Tensor  # int64 [inputs]
    synapses_total: int


def connectivity(layer: Layer, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor,
                                                                     int]:
    """Exact ``(fan_in, fan_out, synapses_total)`` of a layer under its non-zero weights.

    ``fan_in[j]``: kept synapses into output unit ``j``; ``fan_out[i]``: kept synapses out of
    input unit ``i`` (both int64, flattened); ``synapses_total``: connections with every weight
    kept. Counted by :func:`slamp_deploy.geometry.layer_stats`, as the fit check counts.
    """
    c = _connectivity(layer, in_shape)
    return c.fan_in, c.fan_out, c.synapses_total


def _connectivity(layer: Layer, in_shape: tuple[int, ...]) -> _Connectivity:
    """Counted by :func:`slamp_deploy.geometry.layer_stats`, the fit check's own counting, on the
    layer's non-zero weights (``synapses_total``: the same with every weight kept)."""
    w = layer.weight.detach()
    geom = _geometry(layer, tuple(in_shape), (w != 0).cpu().numpy())
    st = layer_stats(geom)
    dense = layer_stats(with_masks([geom], {geom.name: np.ones_like(geom.mask)})[0])
    return _Connectivity(fan_in=torch.from_numpy(np.ascontiguousarray(st.fan_in)),
                         fan_out=torch.from_numpy(np.ascontiguousarray(st.fan_out)),
                         synapses_total=dense.synapses)


def _geometry(layer: Layer, in_shape: tuple[int, ...], mask: np.ndarray) -> LayerGeometry:
    """The counting geometry of a layer reading ``in_shape`` (conv output shape derived)."""
    if layer.kind == "linear":
        return LayerGeometry(name=layer.name, kind="linear", in_shape=(mask.shape[1],),
                             out_shape=(mask.shape[0],), mask=mask, neuron_shape=())
    kernel = mask.shape[2:]
    stride, pad, dilation, groups = conv_attributes(layer)
    spatial = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                    for i, p, d, k, s in zip(in_shape[1:], pad, dilation, kernel, stride,
                                             strict=True))
    return LayerGeometry(name=layer.name, kind=layer.kind, in_shape=in_shape,
                         out_shape=(mask.shape[0], *spatial), mask=mask, neuron_shape=(),
                         stride=stride, padding=pad, dilation=dilation, groups=groups)


def parameter_count(model: torch.nn.Module) -> int:
    """NeuroBench ParameterCount: numel of every parameter (zeros included, buffers not)."""
    return sum(p.numel() for p in model.parameters())


def footprint_bytes(model: torch.nn.Module) -> int:
    """NeuroBench Footprint: bytes of every parameter and buffer.

    snnTorch's ``mem``/``syn`` buffers take the shape of the last batch, so NeuroBench's figure
    depends on history; here the neuron state is cleared first (empty buffers), which makes the
    figure a property of the model alone.
    """
    reset_state(model)
    return (sum(p.numel() * p.element_size() for p in model.parameters())
            + sum(b.numel() * b.element_size() for b in model.buffers()))


# --------------------------------------------------------------------------------------------
# Measurement


def _graded(x: torch.Tensor, nz: torch.Tensor) -> torch.Tensor | None:
    """Per sample: True where some value lies outside {-1, 0, 1} (NeuroBench's test for a
    non-spiking input); ``None`` when every sample is spiking (the common case, no mask built)."""
    off = nz & (x.flatten(1).abs() != 1)
    if not bool(off.any()):
        return None
    return off.any(1)


def measure(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str,
            seed: int = 0, batch_size: int = 256, label: str = "pruned",
            progress: Callable[[int], None] | None = None) -> ActivityReport:
    """Run every sample of ``data`` through ``graph`` and count, exactly.

    The input sequence is encoded as the pipeline encodes it (``encode``; ``rate`` draws from a
    generator seeded with ``seed``). The model's weights, training mode and neuron state are left
    as they were found (state cleared).
    """
    model = graph.model
    was_training = model.training
    model.eval()
    layers = graph.layers
    by_op = {la.op_index: k for k, la in enumerate(layers)}
    neuron_ops = [(i, op) for i, op in enumerate(graph.ops) if op.kind in NEURON_KINDS]
    by_neuron = {i: k for k, (i, _) in enumerate(neuron_ops)}
    conn = [_connectivity(la, graph.ops[la.op_index].in_shape) for la in layers]
    T = timesteps
    ev = [[0] * T for _ in layers]
    ac = [[0] * T for _ in layers]
    mac = [[0] * T for _ in layers]
    spk = [[0] * T for _ in neuron_ops]
    fan_out_dev: list[torch.Tensor] = []
    device = next(model.parameters()).device
    for c in conn:
        fan_out_dev.append(c.fan_out.to(device))

    def observe(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        k = by_op.get(i)
        if k is not None:
            nz = (inp != 0).flatten(1)  # [N, inputs]
            graded = _graded(inp, nz)
            fo = fan_out_dev[k]
            counts = nz.sum(0)  # int64 [inputs]: events per input unit, all samples
            ev[k][t] += int(counts.sum())
            if graded is None:
                ac[k][t] += int((counts * fo).sum())
            else:
                g_counts = nz[graded].sum(0)
                mac[k][t] += int((g_counts * fo).sum())
                ac[k][t] += int(((counts - g_counts) * fo).sum())
        j = by_neuron.get(i)
        if j is not None:
            spk[j][t] += int(torch.count_nonzero(out))

    gen = torch.Generator().manual_seed(seed)
    n = 0
    try:
        with torch.no_grad(), _threads_for(sum(c.synapses_total for c in conn)):
            for xb, _ in data.batches(batch_size):
                x = encode(xb.to(device), T, encoding, sequence=data.sequence, generator=gen)
                if x.shape[0] != T:
                    raise DataError(f"{data.source}: sequences of {int(x.shape[0])} steps, but "
                                    f"{T} timesteps were asked for; pass --timesteps "
                                    f"{int(x.shape[0])}")
                run(graph, x, observers=(observe,))
                n += int(x.shape[1])
                if progress is not None:
                    progress(1)
    finally:
        reset_state(model)
        model.train(was_training)
    if n == 0:
        raise DataError(f"{data.source}: no samples to measure activity on")
    out_layers = [_layer_activity(la, graph.ops[la.op_index], conn[k], n, ev[k], ac[k], mac[k])
                  for k, la in enumerate(layers)]
    out_neurons = tuple(
        NeuronActivity(name=op.name, kind=op.kind, neurons=_numel(op.out_shape), samples=n,
                       spikes=tuple(spk[j]))
        for j, (_, op) in enumerate(neuron_ops))
    return ActivityReport(
        label=label, samples=n, timesteps=T, layers=tuple(out_layers),
        neuron_layers=out_neurons, parameter_count=parameter_count(model),
        parameters_nonzero=sum(int((p != 0).sum()) for p in model.parameters()),
        footprint_bytes=footprint_bytes(model))


def _layer_activity(la: Layer, op: Op, c: _Connectivity, n: int, ev: list[int], ac: list[int],
                    mac: list[int]) -> LayerActivity:
    """One synaptic layer's static counts (weights, synapses, fan-in/out) and its per-step
    event and SynOp counts summed over the ``n`` samples."""
    w = la.weight.detach()
    activity = LayerActivity(
        name=la.name, kind=la.kind, neuron=None if la.neuron is None else la.neuron.name,
        weight_shape=tuple(w.shape), weights_total=int(w.numel()),
        weights_kept=int((w != 0).sum()), inputs=int(c.fan_out.numel()),
        outputs=int(c.fan_in.numel()),
        neurons=0 if la.neuron is None else _numel(la.neuron.out_shape),
        synapses_total=c.synapses_total, synapses_kept=int(c.fan_in.sum()),
        fan_in_max=int(c.fan_in.max()) if c.fan_in.numel() else 0,
        fan_out_max=int(c.fan_out.max()) if c.fan_out.numel() else 0,
        samples=n, input_events=tuple(ev), synops_ac=tuple(ac),
        synops_mac=tuple(mac))
    assert c.fan_out.numel() == _numel(op.in_shape)
    return activity


#: below this many synapses (every weight kept, all layers) a step's ops are short enough that
#: their thread barriers cost more than the threads give
ONE_THREAD_BELOW_SYNAPSES = 20_000_000


@contextmanager
def _threads_for(synapses: int) -> Iterator[None]:
    """Run a small network's measurement on one intra-op thread, then restore the setting.

    The tensors of a small network are small and the observer adds many short ops per step; on
    a shared machine every op's thread barrier waits for a busy core, which made the
    measurement of the built-in example 40x slower with 2 threads than with 1 (12.6 s against
    0.3 s). A network of VGG size (9-15M weights, hundreds of millions of synapses) is the
    other way round: its convolutions dominate, and one thread made the measurement cost 1.6
    calibration passes for two passes over the evaluation set. Counts are integers, so the
    result does not depend on the thread count.
    """
    n = torch.get_num_threads()
    if synapses >= ONE_THREAD_BELOW_SYNAPSES:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@contextmanager
def dense_weights(graph: SpikingGraph, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Put ``weights`` (layer name -> tensor) into the graph's layers for the duration of the
    block, then restore the weights that were there, bit for bit."""
    saved = {la.name: la.weight.detach().clone() for la in graph.layers if la.name in weights}
    try:
        with torch.no_grad():
            for la in graph.layers:
                if la.name in weights:
                    la.weight.copy_(weights[la.name].to(la.weight.device, la.weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for la in graph.layers:
                if la.name in saved:
                    la.weight.copy_(saved[la.name])
