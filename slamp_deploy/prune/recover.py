"""Recovery after pruning: least-squares current matching per output neuron (and BatchNorm).

:func:`match_currents` corrects the layers in network order in one forward sweep over the
calibration data: the sweep holds every calibration sample's values at the current op (all time
steps), so each layer's input is the previous layers' corrected output, and each BatchNorm is
re-estimated when the sweep reaches it. It computes the same thing as the layer-by-layer
definition, :func:`match_currents_per_layer` (one full network pass per layer and per BatchNorm
re-estimate), call for call, at the cost of about one pass; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from slamp_deploy.data import Dataset, encode
from slamp_deploy.distributed import all_reduce_tensor, current, shard_indices
from slamp_deploy.errors import DataError
from slamp_deploy.model.graph import (
    ADD,
    INPUT,
    NEURON_KINDS,
    SYNAPTIC_KINDS,
    Layer,
    Op,
    SpikingGraph,
    reset_state,
)
from slamp_deploy.model.runner import run


def synaptic_current(layer: Layer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's op applied to ``x`` with ``weight`` and no bias."""
    m = layer.module
    if isinstance(m, nn.Linear):
        return F.linear(x, weight)
    return m._conv_forward(x, weight, None)  # type: ignore[operator]


def _factors(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """alpha = num / den per neuron; 1 where there is no pruned current or the factor is not a
    positive finite number."""
    num, den = all_reduce_tensor(num), all_reduce_tensor(den)
    alpha = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 1.0)
    return torch.where(torch.isfinite(alpha) & (alpha > 0), alpha, 1.0).float()


def _accumulate(la: Layer, x: torch.Tensor, dense: torch.Tensor,
                num: torch.Tensor, den: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add one batch's inner products <I^p, I^d> and <I^p, I^p> per output neuron."""
    ip = synaptic_current(la, x, la.weight)
    idn = synaptic_current(la, x, dense.to(x.device))
    dims = [d for d in range(ip.dim()) if d != 1]
    return num + (ip * idn).sum(dims).double(), den + (ip * ip).sum(dims).double()


def _apply_factors(la: Layer, alpha: torch.Tensor, mask: torch.Tensor) -> list[float]:
    shape = (-1,) + (1,) * (la.weight.dim() - 1)
    la.weight.mul_(alpha.view(shape).to(la.weight.device))
    la.weight.mul_(mask.to(la.weight.device, la.weight.dtype))
    return [round(float(a), 6) for a in alpha]


def _reestimated(graph: SpikingGraph) -> dict[int, list[int]]:
    """Layer op index -> the BatchNorm ops between it and the next synaptic ops, which the
    definition re-estimates after correcting that layer."""
    return {la.op_index: [j for j in graph.downstream(la.op_index, through_neurons=True)
                          if graph.ops[j].kind == "batchnorm"] for la in graph.layers}


def _chained_batchnorms(graph: SpikingGraph) -> bool:
    """Whether one layer's re-estimate set holds a BatchNorm downstream of another: the
    definition's pass then feeds the second one the first one's training-mode output, which
    the sweep does not reproduce."""
    for bns in _reestimated(graph).values():
        for i in bns:
            below = set(graph.downstream(i, through_neurons=True))
            if any(j in below for j in bns if j != i):
                return True
    return False


@torch.no_grad()
def match_currents(graph: SpikingGraph, dense: Mapping[str, torch.Tensor],
                   masks: Mapping[str, torch.Tensor], data: Dataset, *, timesteps: int,
                   encoding: str, batch_size: int = 256, seed: int = 0,
                   progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Least-squares rescaling of each output neuron's kept weights, in one forward sweep.

    For output neuron (or conv channel) j of layer l, on calibration inputs that went through the
    already-corrected pruned layers before l:

    .. math::  \\alpha_j = \\langle I^{p}_j, I^{d}_j \\rangle / \\langle I^{p}_j, I^{p}_j \\rangle

    where :math:`I^p` uses the pruned weights and :math:`I^d` the dense ones on the same inputs.
    A neuron with no pruned current, or a non-positive or non-finite factor, keeps factor 1.
    BatchNorm layers after l are re-estimated on the corrected network (cumulative average over
    every step of every batch). The result equals :func:`match_currents_per_layer`'s; a graph
    with two BatchNorms between the same synaptic ops is handed to that definition.

    Raises:
        DataError: the calibration set's values at one op do not fit in memory.

    Returns:
        layer name -> the factors applied (one per output neuron / channel).
    """
    if _chained_batchnorms(graph):
        return match_currents_per_layer(graph, dense, masks, data, timesteps=timesteps,
                                        encoding=encoding, batch_size=batch_size, seed=seed,
                                        progress=progress)
    was_training = graph.model.training
    graph.model.eval()
    world = current()
    dev = _device(graph)
    try:
        full = _Stream.encoded(data, dev, timesteps, encoding, batch_size, seed)
        # each rank takes a shard for the inner products (all-reduced); BatchNorm statistics
        # come from the full set on every rank (identical on all ranks), as in the definition
        part = full if not world.active else _Stream.encoded(
            data.subset(shard_indices(len(data), world)), dev, timesteps, encoding, batch_size,
            seed + world.rank)
        factors = _sweep(graph, dense, masks, full, part, progress)
    except (torch.OutOfMemoryError, MemoryError) as e:
        raise DataError(f"current matching: the {len(data)} calibration samples' values at one "
                        f"layer (all {timesteps} steps) do not fit in memory ({type(e).__name__}); "
                        f"use fewer calibration samples (--calib-samples) or skip it "
                        f"(--no-current-matching)") from e
    finally:
        graph.model.train(was_training)
    return factors


@dataclass(eq=False)
class _Stream:
    """The calibration set's values at the sweep's frontier: op index -> per batch, per step.
    Spike tensors (0/1 only) are held as bool, a quarter of the memory, and restored exactly."""

    inputs: list[torch.Tensor]  # per batch: the encoded [T, B, ...] input
    vals: dict[int, list[list[torch.Tensor]]] = field(default_factory=dict)

    @classmethod
    def encoded(cls, data: Dataset, dev: torch.device, timesteps: int, encoding: str,
                batch_size: int, seed: int) -> _Stream:
        gen = torch.Generator().manual_seed(seed)
        return cls([encode(xb.to(dev), timesteps, encoding, sequence=data.sequence,
                           generator=gen) for xb, _ in data.batches(batch_size)])

    def get(self, j: int, b: int, t: int) -> torch.Tensor:
        if j == INPUT:
            return self.inputs[b][t]
        v = self.vals[j][b][t]
        return v.float() if v.dtype == torch.bool else v

    def put(self, i: int, op: Op, per_batch: list[list[torch.Tensor]]) -> None:
        flat = [h for steps in per_batch for h in steps]
        if (op.kind in NEURON_KINDS and all(h.dtype == torch.float32 for h in flat)
                and all(bool(((h == 0) | (h == 1)).all()) for h in flat)):
            per_batch = [[h.bool() for h in steps] for steps in per_batch]
        self.vals[i] = per_batch


def _apply(graph: SpikingGraph, i: int, op: Op, s: _Stream, b: int, t: int) -> torch.Tensor:
    """Op ``i`` on batch ``b`` at step ``t``, exactly as :func:`model.runner.step` computes it."""
    srcs = graph.sources(i)
    h = s.get(srcs[0], b, t)
    if op.kind == "reshape":
        return h.reshape(h.shape[0], *op.out_shape)
    if op.kind == ADD:
        return h + s.get(srcs[1], b, t)
    out = op.module(h)  # type: ignore[misc]
    return out[0] if isinstance(out, tuple) else out


def _forward(graph: SpikingGraph, i: int, s: _Stream) -> list[list[torch.Tensor]]:
    """Op ``i`` over every batch and step (a neuron's state starts afresh with each batch)."""
    op = graph.ops[i]
    out: list[list[torch.Tensor]] = []
    for b, xb in enumerate(s.inputs):
        if op.kind in NEURON_KINDS:
            reset_state(op.module)  # type: ignore[arg-type]
        out.append([_apply(graph, i, op, s, b, t) for t in range(xb.shape[0])])
    return out


def _match_layer(graph: SpikingGraph, la: Layer, dense: torch.Tensor, mask: torch.Tensor,
                 s: _Stream) -> list[float]:
    """The layer's factors from its inputs in ``s`` (the T steps of a batch taken together)."""
    num = torch.zeros(la.weight.shape[0], dtype=torch.float64, device=la.weight.device)
    den = torch.zeros_like(num)
    src = graph.sources(la.op_index)[0]
    for b, xb in enumerate(s.inputs):
        x = torch.cat([s.get(src, b, t) for t in range(xb.shape[0])])
        num, den = _accumulate(la, x, dense, num, den)
    return _apply_factors(la, _factors(num, den), mask)


def _reestimate(graph: SpikingGraph, i: int, s: _Stream) -> None:
    """BatchNorm op ``i``'s running statistics, afresh, from its inputs in ``s``."""
    bn = graph.ops[i].module
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    mom = bn.momentum
    bn.reset_running_stats()
    bn.momentum = None  # cumulative average over every step of every batch
    bn.train()
    _forward(graph, i, s)
    bn.momentum = mom
    bn.eval()


def _sweep(graph: SpikingGraph, dense: Mapping[str, torch.Tensor],
           masks: Mapping[str, torch.Tensor], full: _Stream, part: _Stream,
           progress: Callable[[int], None] | None) -> dict[str, list[float]]:
    """Every op in call order over the whole calibration set; values are dropped as soon as
    their last reader has run."""
    layers = {la.op_index: la for la in graph.layers}
    bns = {j for js in _reestimated(graph).values() for j in js}
    last_read = {j: max(c) for j, c in enumerate(graph.consumers) if c}
    streams = [full] if part is full else [full, part]
    end = max([*layers, *bns])  # nothing after the last layer or re-estimate needs values
    factors: dict[str, list[float]] = {}
    for i, op in enumerate(graph.ops[:end + 1]):
        if op.kind in SYNAPTIC_KINDS:
            la = layers[i]
            factors[la.name] = _match_layer(graph, la, dense[la.name], masks[la.name], part)
        if i in bns:
            _reestimate(graph, i, full)
        for s in streams if i < end else ():
            s.put(i, op, _forward(graph, i, s))
            for j in [j for j in s.vals if last_read.get(j, -1) <= i and j != i]:
                del s.vals[j]
        if op.kind in SYNAPTIC_KINDS and progress:
            progress(1)
    return factors


@torch.no_grad()
def match_currents_per_layer(graph: SpikingGraph, dense: Mapping[str, torch.Tensor],
                             masks: Mapping[str, torch.Tensor], data: Dataset, *, timesteps: int,
                             encoding: str, batch_size: int = 256, seed: int = 0,
                             progress: Callable[[int], None] | None = None
                             ) -> dict[str, list[float]]:
    """The definition :func:`match_currents` computes: per layer, in network order, one full
    network pass over the calibration data that captures the layer's input, then one more that
    re-estimates the BatchNorms after it. Its cost grows with depth squared; kept as the
    reference the sweep is tested against, and for chained BatchNorms."""
    factors: dict[str, list[float]] = {}
    was_training = graph.model.training
    graph.model.eval()
    world = current()
    full = data
    if world.active:  # each rank takes a shard; the inner products are all-reduced
        data = data.subset(shard_indices(len(data), world))
    for la in graph.layers:
        num = torch.zeros(la.weight.shape[0], dtype=torch.float64, device=la.weight.device)
        den = torch.zeros_like(num)
        gen = torch.Generator().manual_seed(seed + world.rank)
        captured: list[torch.Tensor] = []

        def grab(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor,
                 idx: int = la.op_index, sink: list[torch.Tensor] = captured) -> None:
            if i == idx:
                sink.append(inp)

        for xb, _ in data.batches(batch_size):
            captured.clear()
            x = encode(xb.to(_device(graph)), timesteps, encoding, sequence=data.sequence,
                       generator=gen)
            run(graph, x, observers=(grab,))
            num, den = _accumulate(la, torch.cat(captured), dense[la.name], num, den)
        factors[la.name] = _apply_factors(la, _factors(num, den), masks[la.name])
        # BatchNorm statistics: every rank on the full calibration set (identical on all ranks)
        _reestimate_batchnorm(graph, la, full, timesteps, encoding, batch_size, seed)
        if progress:
            progress(1)
    graph.model.train(was_training)
    return factors


def _reestimate_batchnorm(graph: SpikingGraph, la: Layer, data: Dataset, timesteps: int,
                          encoding: str, batch_size: int, seed: int) -> None:
    """Recompute running statistics of the BatchNorm ops between ``la`` and the next layer."""
    bns = [graph.ops[j].module for j in graph.downstream(la.op_index, through_neurons=True)
           if graph.ops[j].kind == "batchnorm"]
    if not bns:
        return
    saved = [(bn, bn.momentum) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over every step of every batch
        bn.train()
    gen = torch.Generator().manual_seed(seed)
    for xb, _ in data.batches(batch_size):
        run(graph, encode(xb.to(_device(graph)), timesteps, encoding, sequence=data.sequence,
                          generator=gen))
    for bn, mom in saved:
        bn.momentum = mom
        bn.eval()


def _device(graph: SpikingGraph) -> torch.device:
    """Where the model's parameters live (inputs go there)."""
    return next(graph.model.parameters()).device
