r"""Layer scores and sparsity allocation: SLAMP, LAMP and the baselines.

Every method answers one question: how many weights does each layer keep? Within a layer the
survivors are always the largest-magnitude weights (:func:`magnitude_mask`), so methods differ
only in their allocation across layers.

LAMP (Lee et al., ICLR 2021). Sort a layer's weights ascending by magnitude; the weight at sorted
position :math:`u` scores

.. math::  \mathrm{lamp}(u) = \frac{W[u]^2}{\sum_{v \ge u} W[v]^2}

SLAMP (this project's reconstruction, see docs/method.md) multiplies a layer's LAMP scores by its
temporal importance :math:`\lambda_l \ge 1`:

.. math::  \lambda_l = \frac{\max_t \sum_{\tau \le t} h_l[t-\tau]\, w_t\, a_l(\tau)}
                            {\max_t h_l[0]\, w_t\, a_l(t)}

with :math:`h_l` the neuron's sub-threshold impulse response, :math:`a_l` the RMS presynaptic
activity per step and :math:`w_t` the step's contribution to the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from slamp_deploy.errors import UnknownTargetError, UsageError

METHODS = ("slamp", "lamp", "global", "uniform", "uniform+", "erk")
LAMBDA_VARIANTS = ("max", "l2", "sqrt")


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    r"""LAMP score of every weight of one layer, in the weight's shape.

    .. math::  \mathrm{lamp}(u) = W[u]^2 / \sum_{v \ge u} W[v]^2

    over the weights sorted ascending by magnitude (stable: ties keep flat-index order). The
    largest weight scores exactly 1; pruned (zero) weights score 0; scores are invariant to
    rescaling the layer. Pure: the input is not modified.
    """
    w = weight.detach().flatten().double()
    sq = w * w
    order = torch.sort(sq, stable=True).indices
    sorted_sq = sq[order]
    # suffix sums: denom[u] = sum_{v >= u} sorted_sq[v]
    denom = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])
    s = torch.where(denom > 0, sorted_sq / torch.where(denom > 0, denom, 1.0), 0.0)
    out = torch.empty_like(s)
    out[order] = s
    return out.reshape(weight.shape)


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


def temporal_factor(h: np.ndarray, activity: np.ndarray, weights: np.ndarray,
                    variant: str = "max") -> float:
    """SLAMP's layer importance lambda from impulse response, activity and step weights.

    ``max`` is the worst case over time steps (the definition), ``l2`` replaces both maxima by an
    RMS over time, ``sqrt`` is the dampened ``sqrt(max)``. A layer with no activity gets 1.
    """
    if variant not in LAMBDA_VARIANTS:
        raise UsageError(f"--lambda-variant {variant!r}: unknown; choose one of "
                         f"{', '.join(LAMBDA_VARIANTS)}")
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


def magnitude_mask(weight: torch.Tensor, keep: int, alive: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Keep the ``keep`` largest-magnitude alive weights (ties: lower flat index wins)."""
    w = weight.detach().abs().flatten().double()
    if alive is not None:
        w = torch.where(alive.flatten(), w, torch.tensor(-1.0, dtype=w.dtype))
    n = w.numel()
    keep = max(0, min(keep, n))
    # stable descending sort by magnitude: sort ascending on (-|w|), stable keeps index order
    order = torch.sort(-w, stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:keep]] = True
    if alive is not None:
        mask &= alive.flatten()
    return mask.reshape(weight.shape)


@dataclass(frozen=True)
class Allocation:
    """Per-layer keep counts chosen by a method, with each layer's score factor."""

    method: str
    keep: dict[str, int]  # layer name -> weights kept
    layer_score: dict[str, float]  # lambda for slamp, 1 for lamp, density for others
    binding: dict[str, str]  # what decided each layer's count


def global_keep(n_alive: int, sparsity: float) -> int:
    """Number of weights to keep for a target fraction of zeros over ``n_alive`` weights."""
    return round(n_alive * (1.0 - sparsity))


def _sorted_layer_scores(weight: torch.Tensor, lam: float, lamp: bool) -> torch.Tensor:
    """One layer's scores in descending order, negated (so ascending), float64.

    Equal bit for bit to ``lamp_scores(weight) * lam`` sorted (``|weight|`` when not LAMP):
    within a layer LAMP scores rise with magnitude, so one sort of the magnitudes orders them.
    """
    s = torch.sort(weight.detach().flatten().abs().cpu(), descending=True).values.double()
    if lamp:
        s.square_()
        denom = torch.cumsum(s, 0)
        s.div_(torch.where(denom > 0, denom, 1.0))
        del denom
        if lam != 1.0:
            s.mul_(lam)
    return s.neg_()


def _topk_counts(weights: Mapping[str, torch.Tensor], lam: Mapping[str, float], lamp: bool,
                 k: int) -> dict[str, int]:
    """How many of each layer's weights fall in the global top-k by score (stable ties).

    One sort per layer and a bisection on the threshold's float64 bit pattern (no global sort,
    no concatenation: about one sort of all weights in time, see docs/benchmarks.md). Ties at
    the threshold go to layers in order, as a stable global sort would give them.
    """
    names = list(weights)
    neg = [_sorted_layer_scores(weights[n], lam[n], lamp) for n in names]
    if k <= 0:
        return dict.fromkeys(names, 0)

    def count_ge(x: float) -> int:
        t = torch.tensor([-x], dtype=torch.float64)
        return sum(int(torch.searchsorted(s, t, right=True)) for s in neg)

    lo = 0
    hi = int(np.float64(max(float(-s[0]) for s in neg if s.numel())).view(np.int64))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_ge(float(np.int64(mid).view(np.float64))) >= k:
            lo = mid
        else:
            hi = mid - 1
    t = torch.tensor([-float(np.int64(lo).view(np.float64))], dtype=torch.float64)
    counts, rest = {}, k
    above = [int(torch.searchsorted(s, t, right=False)) for s in neg]
    rest -= sum(above)
    for n, s, a in zip(names, neg, above, strict=True):
        take = min(rest, int(torch.searchsorted(s, t, right=True)) - a)
        rest -= take
        counts[n] = a + take
    return counts


def allocate(method: str, weights: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
             sparsity: float, *, lambdas: Mapping[str, float] | None = None,
             order: Sequence[str] | None = None) -> Allocation:
    """Decide per-layer keep counts for a global target ``sparsity`` over all layers.

    Args:
        method: one of :data:`METHODS`.
        weights: layer name -> weight tensor (current values; pruned ones are zero).
        alive: layer name -> bool mask of weights not yet pruned.
        sparsity: target fraction of zeros over all prunable weights, in [0, 1).
        lambdas: SLAMP's temporal factor per layer (required for ``slamp``).
        order: layer names in network order (first and last matter for ``uniform+``).

    Returns:
        The keep count of every layer; the global total equals ``round(N * (1 - sparsity))``
        up to ties and layers that cannot keep more than they have alive.
    """
    if method not in METHODS:
        raise UnknownTargetError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= sparsity < 1.0:
        raise UsageError(f"--sparsity {sparsity}: must be in [0, 1)")
    names = list(order or weights)
    n_total = sum(weights[n].numel() for n in names)
    n_alive = {n: int(alive[n].sum()) for n in names}
    k = min(global_keep(n_total, sparsity), sum(n_alive.values()))
    if method in ("slamp", "lamp", "global"):
        factor = {n: 1.0 if method != "slamp" else float((lambdas or {}).get(n, 1.0))
                  for n in names}
        counts = _topk_counts({n: weights[n].detach() * alive[n] for n in names}, factor,
                              method != "global", k)
        binding = {n: f"{method}.threshold" for n in names}
        # No layer is ever emptied. Under LAMP every layer's largest weight scores 1 and all
        # others score <= 1/2, so this only bites when k < number of layers; under SLAMP a
        # layer with a large lambda can outscore another layer's maximum (0.5 * lambda > 1),
        # and global magnitude ignores layers altogether, so keep one weight per layer.
        for n in names:
            if counts[n] == 0 and n_alive[n] > 0:
                counts[n] = 1
                binding[n] = "min_one_per_layer"
        return Allocation(method=method, keep=counts, layer_score=factor, binding=binding)
    density = _layer_densities(method, weights, names, k / max(n_total, 1))
    counts = {n: min(n_alive[n], max(1, round(density[n] * weights[n].numel())))
              for n in names}
    return Allocation(method=method, keep=counts, layer_score=dict(density),
                      binding={n: f"{method}.density" for n in names})


def _layer_densities(method: str, weights: Mapping[str, torch.Tensor], names: Sequence[str],
                     density: float) -> dict[str, float]:
    """Per-layer densities of the rule-based baselines, summing to the global keep count."""
    sizes = {n: weights[n].numel() for n in names}
    total = sum(sizes.values())
    if method == "uniform":
        return {n: density for n in names}
    if method == "uniform+":
        # first layer dense, last layer at most 80% pruned, the layers between uniform
        dens = {names[0]: 1.0}
        budget = density * total - sizes[names[0]]
        others = names[1:]
        d = _clip01(budget / max(sum(sizes[n] for n in others), 1))
        if others and d < 0.2:
            last = names[-1]
            dens[last] = min(1.0, 0.2)
            middle = others[:-1]
            d = _clip01((budget - 0.2 * sizes[last]) / max(sum(sizes[n] for n in middle), 1))
            others = middle
        dens.update({n: d for n in others})
        return dens
    # ERK (Evci et al. 2020): density_l proportional to sum(shape) / prod(shape), scaled so the
    # total matches; layers that would exceed density 1 are made dense and the rest rescaled.
    raw = {n: sum(weights[n].shape) / weights[n].numel() for n in names}
    dense: set[str] = set()
    while True:
        budget = density * total - sum(sizes[n] for n in dense)
        free = [n for n in names if n not in dense]
        eps = budget / max(sum(raw[n] * sizes[n] for n in free), 1e-12)
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else eps * raw[n] for n in names}


def _clip01(v: float) -> float:
    return min(max(v, 0.0), 1.0)
