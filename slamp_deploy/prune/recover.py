"""Recovery after pruning: least-squares current matching per output neuron (and BatchNorm)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from slamp_deploy.data import Dataset, encode
from slamp_deploy.distributed import all_reduce_tensor, current, shard_indices
from slamp_deploy.model.graph import Layer, Op, SpikingGraph
from slamp_deploy.model.runner import run


def synaptic_current(layer: Layer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's op applied to ``x`` with ``weight`` and no bias."""
    m = layer.module
    if isinstance(m, nn.Linear):
        return F.linear(x, weight)
    return m._conv_forward(x, weight, None)  # type: ignore[operator]


@torch.no_grad()
def match_currents(graph: SpikingGraph, dense: Mapping[str, torch.Tensor],
                   masks: Mapping[str, torch.Tensor], data: Dataset, *, timesteps: int,
                   encoding: str, batch_size: int = 256, seed: int = 0,
                   progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Least-squares rescaling of each output neuron's kept weights, layer by layer.

    For output neuron (or conv channel) j of layer l, on calibration inputs that went through the
    already-corrected pruned layers before l:

    .. math::  \\alpha_j = \\langle I^{p}_j, I^{d}_j \\rangle / \\langle I^{p}_j, I^{p}_j \\rangle

    where :math:`I^p` uses the pruned weights and :math:`I^d` the dense ones on the same inputs.
    A neuron with no pruned current, or a non-positive or non-finite factor, keeps factor 1.
    BatchNorm layers after l are re-estimated on the corrected network.

    Returns:
        layer name -> the factors applied (one per output neuron / channel).
    """
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
            x = torch.cat(captured)
            ip = synaptic_current(la, x, la.weight)
            idn = synaptic_current(la, x, dense[la.name].to(x.device))
            dims = [d for d in range(ip.dim()) if d != 1]
            n_, d_ = (ip * idn).sum(dims).double(), (ip * ip).sum(dims).double()
            num, den = num + n_, den + d_
        num, den = all_reduce_tensor(num), all_reduce_tensor(den)
        alpha = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 1.0)
        alpha = torch.where(torch.isfinite(alpha) & (alpha > 0), alpha, 1.0).float()
        shape = (-1,) + (1,) * (la.weight.dim() - 1)
        la.weight.mul_(alpha.view(shape).to(la.weight.device))
        la.weight.mul_(masks[la.name].to(la.weight.device, la.weight.dtype))
        factors[la.name] = [round(float(a), 6) for a in alpha]
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
