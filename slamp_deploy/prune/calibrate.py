"""Temporal statistics from calibration data: what SLAMP's layer scores are made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from slamp_deploy.data import Dataset, encode
from slamp_deploy.distributed import all_reduce_sum, current, shard_indices
from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import (
    INPUT,
    NEURON_KINDS,
    SYNAPTIC_KINDS,
    Op,
    SpikingGraph,
    neuron_spec,
)
from slamp_deploy.model.runner import loss, run
from slamp_deploy.prune.temporal import chain_response, impulse_response, temporal_factor

TIMESTEP_WEIGHTS = ("uniform", "gradient")

#: progress(advance) -> None, called once per processed batch
Progress = Callable[[int], None]


@dataclass(frozen=True, eq=False)
class TemporalStats:
    """Per-layer, per-step activity measured on the calibration set."""

    timesteps: int
    samples: int
    activity_rms: dict[str, np.ndarray]  # layer -> [T] RMS presynaptic activity a_l(t)
    firing_rate: dict[str, np.ndarray]  # neuron op -> [T] mean spikes per neuron per step
    impulse: dict[str, np.ndarray]  # layer -> [T] sub-threshold impulse response h_l
    timestep_weights: np.ndarray  # [T] w_t, max 1
    timestep_weights_source: str  # "uniform" | "gradient"
    #: layer -> [T] response at the output to a unit current into the layer's neurons, through
    #: every later layer (:func:`downstream_impulse`); empty when not computed
    downstream: dict[str, np.ndarray] = field(default_factory=dict)

    def lambdas(self, variant: str = "max") -> dict[str, float]:
        """SLAMP's temporal factor per layer (see :func:`slamp_deploy.prune.temporal`)."""
        return {n: temporal_factor(self.impulse[n], self.activity_rms[n], self.timestep_weights,
                                   variant, chain=self.downstream.get(n))
                for n in self.activity_rms}


def layer_impulse(graph: SpikingGraph, timesteps: int) -> dict[str, np.ndarray]:
    """Impulse response of the neurons each layer feeds; per-neuron decays use the layer mean."""
    out = {}
    for layer in graph.layers:
        out[layer.name] = (impulse_response(None, 0.0, 0.0, timesteps) if layer.neuron is None
                           else _neuron_impulse(layer.neuron, timesteps))
    return out


def _neuron_impulse(op: Op, timesteps: int, rate: float | None = None) -> np.ndarray:
    """The op's sub-threshold impulse response (layer-mean decays). With ``rate`` (mean spikes
    per neuron and step) and a zero reset, the membrane decay is ``beta * (1 - rate)``: a spike
    erases what the membrane held, so that share of an error is forgotten each step."""
    p = neuron_spec(op)
    beta = float(p.beta.mean())
    if rate is not None and p.reset_mechanism == "zero":
        beta *= 1.0 - min(max(rate, 0.0), 1.0)
    alpha = float(p.alpha.mean()) if p.alpha is not None else 0.0
    return impulse_response(op.kind, beta, alpha, timesteps)


def neuron_successors(graph: SpikingGraph, i: int) -> dict[int, int]:
    """Neuron ops that neuron op ``i``'s spikes reach without passing another neuron op, each
    with the number of distinct paths there (through synaptic ops, BN, pooling, reshapes and
    residual adds: an identity shortcut is a path with no synaptic op on it)."""
    paths = dict.fromkeys(range(len(graph.ops)), 0)
    paths[i] = 1
    out: dict[int, int] = {}
    for j in range(i + 1, len(graph.ops)):  # ops are in a topological (call) order
        n = sum(paths[k] for k in graph.sources(j) if k != INPUT and
                (k == i or graph.ops[k].kind not in NEURON_KINDS))
        paths[j] = n
        if n and graph.ops[j].kind in NEURON_KINDS:
            out[j] = n
    return out


def downstream_impulse(graph: SpikingGraph, timesteps: int,
                       rates: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per layer, the chain response of its neurons through every later neuron population.

    Neuron ops are visited from the output backwards, so every successor's response is known
    when a population needs it (:func:`slamp_deploy.prune.temporal.chain_response`). A layer
    with no neuron after it (a non-spiking readout) gets the unit impulse. ``rates`` (neuron op
    -> measured spikes per neuron per step) shortens zero-reset memories (:func:`_neuron_impulse`).
    """
    chain: dict[int, np.ndarray] = {}
    for i in reversed(range(len(graph.ops))):
        op = graph.ops[i]
        if op.kind not in NEURON_KINDS:
            continue
        succ = [(chain[j], n) for j, n in neuron_successors(graph, i).items()]
        rate = None if rates is None or op.name not in rates else float(np.mean(rates[op.name]))
        chain[i] = chain_response(_neuron_impulse(op, timesteps, rate), succ)
    index = {id(op): k for k, op in enumerate(graph.ops)}
    out = {}
    for layer in graph.layers:
        if layer.neuron is None:
            out[layer.name] = impulse_response(None, 0.0, 0.0, timesteps)
        else:
            out[layer.name] = chain[index[id(layer.neuron)]]
    return out


def calibrate(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str,
              readout: str, batch_size: int = 128, timestep_weights: str = "uniform",
              seed: int = 0, progress: Progress | None = None) -> TemporalStats:
    """Measure a_l(t) for every layer and firing rates for every neuron op on ``data``.

    With ``timestep_weights="gradient"`` the step weights are ``E ||dLoss/dI_L[t]||`` of the
    last layer's input current on one labelled batch, normalised to max 1; otherwise uniform.
    """
    if timestep_weights not in TIMESTEP_WEIGHTS:
        raise UsageError(f"--timestep-weights {timestep_weights!r}: choose one of "
                         f"{', '.join(TIMESTEP_WEIGHTS)}")
    layer_at = {la.op_index: la.name for la in graph.layers}
    sumsq = {name: np.zeros(timesteps) for name in layer_at.values()}
    width = {la.name: int(np.prod(graph.ops[la.op_index].in_shape)) for la in graph.layers}
    spikes = {op.name: np.zeros(timesteps) for op in graph.neuron_ops}
    n_neurons = {op.name: int(np.prod(op.out_shape)) for op in graph.neuron_ops}

    def observe(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        if i in layer_at:
            sumsq[layer_at[i]][t] += float(inp.double().pow(2).sum())
        if op.kind in NEURON_KINDS:
            spikes[op.name][t] += float(out.double().sum())

    world = current()
    full = data
    if world.active:  # each rank takes a shard; the sums are all-reduced below
        data = data.subset(shard_indices(len(data), world))
    gen = torch.Generator().manual_seed(seed + world.rank)
    graph.model.eval()
    with torch.no_grad():
        for xb, _ in data.batches(batch_size):
            x = encode(xb.to(_device(graph)), timesteps, encoding, sequence=data.sequence,
                       generator=gen)
            run(graph, x, observers=(observe,))
            if progress:
                progress(1)
    n = len(full)
    sumsq = {k: all_reduce_sum(v) for k, v in sumsq.items()}
    spikes = {k: all_reduce_sum(v) for k, v in spikes.items()}
    activity = {k: np.sqrt(v / (n * width[k])) for k, v in sumsq.items()}
    rates = {k: v / (n * n_neurons[k]) for k, v in spikes.items()}
    if timestep_weights == "gradient":
        w = _gradient_weights(graph, data, timesteps, encoding, readout, batch_size, gen)
    else:
        w = np.ones(timesteps)
    return TemporalStats(timesteps=timesteps, samples=n, activity_rms=activity, firing_rate=rates,
                         impulse=layer_impulse(graph, timesteps), timestep_weights=w,
                         timestep_weights_source=timestep_weights,
                         downstream=downstream_impulse(graph, timesteps, rates))


def _gradient_weights(graph: SpikingGraph, data: Dataset, timesteps: int, encoding: str,
                      readout: str, batch_size: int, gen: torch.Generator) -> np.ndarray:
    """E ||dLoss/dI_L[t]|| for the last synaptic layer's current, normalised to max 1."""
    last = max(i for i, op in enumerate(graph.ops) if op.kind in SYNAPTIC_KINDS)
    currents: list[torch.Tensor] = []

    def keep(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        if i == last:
            out.retain_grad()
            currents.append(out)

    xb, yb = next(data.batches(batch_size))
    x = encode(xb.to(_device(graph)), timesteps, encoding, sequence=data.sequence, generator=gen)
    out = run(graph, x, observers=(keep,))
    loss(out, yb.to(x.device), readout).backward()
    graph.model.zero_grad(set_to_none=True)
    g = np.array([float(c.grad.flatten(1).norm(dim=1).mean()) if c.grad is not None else 0.0
                  for c in currents])
    g = all_reduce_sum(g)  # ranks saw different batches; the normalised sum is their mean
    return g / g.max() if g.max() > 0 else np.ones(timesteps)


__all__ = ["SYNAPTIC_KINDS", "TIMESTEP_WEIGHTS", "TemporalStats", "calibrate",
           "downstream_impulse", "layer_impulse", "neuron_successors"]


def _device(graph: SpikingGraph) -> torch.device:
    """Where the model's parameters live (inputs go there)."""
    return next(graph.model.parameters()).device
