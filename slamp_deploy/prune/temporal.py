r"""SLAMP's temporal factor lambda: estimated from calibration statistics, or measured.

Estimated (:func:`temporal_factor`, fed by :mod:`slamp_deploy.prune.calibrate`):

.. math::  \lambda_l = \frac{\max_t \sum_{\tau \le t} h_l[t-\tau]\, w_t\, a_l(\tau)}
                            {\max_t h_l[0]\, w_t\, a_l(t)}

with :math:`h_l` the neuron's sub-threshold impulse response (:func:`impulse_response`),
:math:`a_l` the RMS presynaptic activity per step and :math:`w_t` the step's contribution to the
output.

Downstream-aware (variant ``downstream``, docs/method.md): the chain response :math:`H_l` is the
response at the output to a unit current into layer ``l``'s neurons, their impulse response
convolved with the responses of every neuron population after them, averaged over the paths
through the network (:func:`chain_response`; the graph walk that gives each neuron op its
successors is :func:`slamp_deploy.prune.calibrate.downstream_impulse`). The ratio above with
:math:`H_l` for :math:`h_l` (RMS over t) is the factor if errors crossed every later population
linearly; the ratio with :math:`h_l` is the factor if they stopped at the first spike. The
variant is their geometric mean, :math:`\sqrt{\lambda^{l2}_l(h_l)\,\lambda^{l2}_l(H_l)}`.

Measured (:func:`measured_lambdas`): for every prunable layer :math:`l`, the smallest
``fraction`` of its alive weights is pruned
temporarily and the distortion of the output layer's membrane (RMS over samples and outputs,
against the unpruned network on the same inputs) is measured two ways:

* accumulated: the pruned layer acts at every step; :math:`D^{acc}_l = \max_t \mathrm{RMS}_t`;
* single step: for each step :math:`\tau`, the network runs unpruned up to :math:`\tau - 1` and the
  pruned layer acts at step :math:`\tau` only; :math:`D^{1}_l = \max_\tau \mathrm{RMS}_\tau` of the
  immediate difference at step :math:`\tau`.

.. math::  \lambda_l = \max(1,\ D^{acc}_l / D^{1}_l)

which is the measured counterpart of the estimator (worst
accumulated error over the worst single-step error). At ``T = 1`` both runs are the same single
step, so :math:`\lambda_l = 1` exactly (LAMP). The single-step reference is taken at every step,
not only at ``t = 0``: in a deep SNN the layers after the first often carry no spikes at ``t = 0``,
so a reference made of the first step alone would be 0 for them and the ratio undefined.

The weights are restored bit for bit afterwards (the original tensors are copied back), and the
neuron state is reset, so the call leaves the model exactly as it found it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from slamp_deploy.data import Dataset, encode
from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import NEURON_KINDS, SpikingGraph, reset_state
from slamp_deploy.model.runner import step
from slamp_deploy.prune.masks import magnitude_mask

__all__ = [
    "LAMBDA_VARIANTS",
    "chain_response",
    "distortion",
    "impulse_response",
    "measured_lambdas",
    "temporal_factor",
]

LAMBDA_VARIANTS = ("max", "l2", "sqrt", "downstream")


def impulse_response(kind: str | None, beta: float, alpha: float, timesteps: int) -> np.ndarray:
    """Sub-threshold membrane value k steps after a unit input current, k = 0..T-1.

    Leaky: ``beta**k``; Synaptic: ``sum_{i<=k} alpha**i * beta**(k-i)``; no neuron (a
    non-spiking readout): a unit impulse.
    """
    k = np.arange(timesteps)
    if kind == "leaky":
        return beta ** k.astype(np.float64)
    if kind == "synaptic":
        return np.array([sum(alpha ** i * beta ** (n - i) for i in range(n + 1)) for n in k])
    h = np.zeros(timesteps)
    h[0] = 1.0
    return h


def chain_response(h: np.ndarray, successors: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Response at the output to a unit current into a neuron population, over T steps.

    ``h`` is the population's own impulse response; ``successors`` holds, for every neuron
    population its spikes reach without passing another neuron, that population's own chain
    response and the number of distinct paths leading there. The result is ``h`` convolved with
    the path-weighted mean of the successors' responses (each normalised to 1 at lag 0),
    truncated to T and normalised to 1 at lag 0; with no successors (the readout) it is ``h``.
    Every op is a convolution of non-negative sequences, so memoryless neurons everywhere
    (``h = [1, 0, ...]``) give ``[1, 0, ...]`` again, and so does T = 1.
    """
    T = len(h)
    h = np.asarray(h, dtype=np.float64)
    total = sum(n for _, n in successors)
    if total == 0:
        return h / h[0] if h[0] > 0 else h
    down = np.zeros(T)
    for resp, n in successors:
        down += n * resp[:T] / (resp[0] if resp[0] > 0 else 1.0)
    out = np.convolve(h, down / total)[:T]
    return out / out[0] if out[0] > 0 else out


def temporal_factor(h: np.ndarray, activity: np.ndarray, weights: np.ndarray,
                    variant: str = "max", chain: np.ndarray | None = None) -> float:
    """SLAMP's layer importance lambda from impulse response, activity and step weights.

    ``max`` is the worst case over time steps (the definition), ``l2`` replaces both maxima by an
    RMS over time, ``sqrt`` is the dampened ``sqrt(max)``. ``downstream`` is the geometric mean
    of ``l2`` with ``h`` and ``l2`` with ``chain``, the layer's chain response
    (:func:`chain_response`), which it needs. A layer with no activity gets 1.
    """
    if variant not in LAMBDA_VARIANTS:
        raise UsageError(f"--lambda-variant {variant!r}: unknown; choose one of "
                         f"{', '.join(LAMBDA_VARIANTS)}")
    if variant == "downstream":
        if chain is None:
            raise UsageError("lambda variant 'downstream' needs the layer's chain response "
                             "(calibrate() computes it)")
        own = temporal_factor(h, activity, weights, "l2")
        return math.sqrt(own * temporal_factor(chain, activity, weights, "l2"))
    T = len(activity)
    acc = np.array([sum(h[t - tau] * activity[tau] for tau in range(t + 1)) for t in range(T)])
    num_t = weights * acc
    den_t = h[0] * weights * activity
    if variant == "l2":
        num, den = math.sqrt(np.mean(num_t ** 2)), math.sqrt(np.mean(den_t ** 2))
    else:
        num, den = float(num_t.max()), float(den_t.max())
    if den <= 0 or not math.isfinite(num / den):
        return 1.0
    lam = max(1.0, num / den)
    return math.sqrt(lam) if variant == "sqrt" else lam


_STATE = ("mem", "syn")


def _step(graph: SpikingGraph, h: torch.Tensor) -> torch.Tensor:
    """One step through the graph (as :func:`slamp_deploy.model.runner.run` does); the output
    membrane."""
    last = graph.output_op
    h = step(graph, h)
    if last.kind in NEURON_KINDS:
        return last.module.mem.flatten(1).clone()  # type: ignore[union-attr]
    return h.flatten(1).clone()


def _snapshot(graph: SpikingGraph) -> list[tuple[torch.nn.Module, str, torch.Tensor]]:
    snap = []
    for op in graph.neuron_ops:
        for attr in _STATE:
            v = getattr(op.module, attr, None)
            if isinstance(v, torch.Tensor):
                snap.append((op.module, attr, v.clone()))
    return snap


def _restore(snap: list[tuple[torch.nn.Module, str, torch.Tensor]]) -> None:
    for module, attr, v in snap:
        setattr(module, attr, v.clone())


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


@torch.no_grad()
def distortion(graph: SpikingGraph, x: torch.Tensor, layer: str, fraction: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-step output RMS distortion of pruning ``fraction`` of ``layer``: accumulated, 1-step.

    ``x`` is an encoded input ``[T, N, ...]``. Returns two arrays of length T. The layer's weights
    are restored exactly before returning (also on error).
    """
    la = graph.layer(layer)
    weight = la.weight
    saved = weight.detach().clone()
    alive = saved != 0
    n_alive = int(alive.sum())
    T = x.shape[0]
    if n_alive <= 1:
        return np.zeros(T), np.zeros(T)
    n_prune = max(1, round(fraction * n_alive))
    mask = magnitude_mask(saved.cpu(), n_alive - n_prune, alive.cpu()).to(saved.device)
    pruned = saved * mask.to(saved.dtype)
    try:
        # dense trajectory, with the neuron state before every step
        reset_state(graph.model)
        dense, states = [], []
        for t in range(T):
            states.append(_snapshot(graph))
            dense.append(_step(graph, x[t]))
        # accumulated: pruned at every step
        weight.copy_(pruned)
        reset_state(graph.model)
        acc = np.array([_rms(_step(graph, x[t]), dense[t]) for t in range(T)])
        # single step: dense state up to tau - 1, pruned at tau only
        one = np.zeros(T)
        for t in range(T):
            reset_state(graph.model)
            _restore(states[t])
            one[t] = _rms(_step(graph, x[t]), dense[t])
    finally:
        weight.copy_(saved)
        reset_state(graph.model)
    return acc, one


@torch.no_grad()
def measured_lambdas(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str,
                     fraction: float = 0.05, seed: int = 0, max_samples: int = 256
                     ) -> dict[str, float]:
    """Measured temporal factor of every prunable layer (see the module docstring).

    Args:
        graph: the traced network (its weights are modified temporarily and restored exactly).
        data: calibration samples; at most ``max_samples`` of them are used.
        timesteps, encoding: how the samples are fed (as the pipeline feeds them).
        fraction: share of each layer's alive weights pruned for the measurement (smallest first).
        seed: seeds the encoder (rate encoding draws spikes).

    Returns:
        layer name -> lambda >= 1 (exactly 1 at ``timesteps == 1``; 1 for a layer whose pruning
        changes nothing measurable).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction {fraction}: must be in (0, 1)")
    n = min(len(data), max_samples)
    sub = data.subset(np.arange(n))
    gen = torch.Generator().manual_seed(seed)
    device = next(graph.model.parameters()).device
    x = encode(sub.x.to(device), timesteps, encoding, sequence=sub.sequence, generator=gen)
    x = x[:timesteps]
    was_training = graph.model.training
    graph.model.eval()
    out: dict[str, float] = {}
    try:
        for la in graph.layers:
            acc, one = distortion(graph, x, la.name, fraction)
            num, den = float(acc.max()), float(one.max())
            lam = num / den if den > 0 else 1.0
            out[la.name] = max(1.0, lam) if math.isfinite(lam) else 1.0
    finally:
        graph.model.train(was_training)
    return out

