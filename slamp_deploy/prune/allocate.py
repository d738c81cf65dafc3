"""Allocation: turn a method and a target sparsity into a :class:`PruningPlan`, capped or not.

Uncapped, a score method keeps the global top-k of its scores (:func:`_topk_counts`: one sort
per layer and a bisection on the threshold) and a density method rounds its densities. With a
chip's caps (:class:`ChipCaps`), those counts go through the laminar capped greedy
(:func:`allocate_capped`), which may move weights between layers and inside them.

The caps form a laminar family (every weight's caps are nested):

    weight row  ⊂  core group of rows  ⊂  layer  ⊂  whole network (global keep count)

* **fan_in** -- at most ``F`` kept per weight row (linear: an output neuron's incoming row;
  conv: an output channel's kernel, which bounds the fan-in of every neuron of that channel).
* **core_synapses** -- at most ``B`` kept per group of rows mapped to one core. For linear
  layers the groups are exactly :func:`slamp_deploy.geometry.core_starts` of the neuron-count
  mapping that :func:`slamp_deploy.fit.check.check_fit` uses; for conv layers (whose kernels
  serve neurons on several cores) the budget becomes a per-row cap of
  ``B // neurons_per_core``, which bounds any core's synapses the same way.
* **layer** -- at most ``L`` kept in the layer (``extra_caps`` only).
* **global** -- at most ``keep`` kept in total.

Keeping weights in score order while every cap containing them has room is the greedy algorithm
on a laminar matroid, which maximises the sum of kept scores. Because a weight refused by a cap is
followed only by weights that cap also refuses, the greedy equals filtering bottom-up: rank each
surviving weight within its row, drop ranks ``>= F``; rank the survivors within their group, drop
ranks ``>= B``; and so on. Each level is one stable sort, so 15M weights allocate in seconds.
Ties break by flat index (stable sort on ``(-score, index)``).

Residual joins (layers with the same ``LayerGeometry.population``) share their caps: row ``r``
of every joined layer feeds the same neurons, so the fan-in cap (and a conv's per-row core
budget) holds for the joined rows together, and a joined linear population shares its core
groups. An identity shortcut into the population (kind ``identity``) takes one synapse per
neuron off those caps and is not allocated (it has no weights to prune). The family stays
laminar unless ``extra_caps`` adds a per-layer cap to a joined layer (rule-based methods): then
the filter is still feasible, no cap is ever exceeded, but not necessarily optimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from slamp_deploy.errors import ModelError, UsageError
from slamp_deploy.geometry import IDENTITY, LayerCaps, LayerGeometry, population_members
from slamp_deploy.prune.methods import (
    DensityMethod,
    PruningMethod,
    ScoreMethod,
    available_methods,
    get_method,
)
from slamp_deploy.prune.plan import LayerPlan, PruningPlan

__all__ = [
    "LEVELS",
    "ChipCaps",
    "allocate",
    "allocate_capped",
    "global_keep",
    "score_arrays",
]

#: Cap levels, innermost first; also the names reported as ``binding``.
LEVELS: tuple[str, ...] = ("fan_in", "core_synapses", "layer", "global")
_INF = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipCaps:
    """What the capped allocation needs from a chip: each layer's geometry and its caps."""

    layers: tuple[LayerGeometry, ...]  # as built for check_fit (identity shortcuts included)
    caps: Mapping[str, LayerCaps]  # layer name -> the profile's caps on it


def global_keep(n_alive: int, sparsity: float) -> int:
    """Number of weights to keep for a target fraction of zeros over ``n_alive`` weights."""
    return round(n_alive * (1.0 - sparsity))


def allocate(method: str, weights: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
             sparsity: float, *, lambdas: Mapping[str, float] | None = None,
             order: Sequence[str] | None = None, caps: ChipCaps | None = None) -> PruningPlan:
    """Decide per-layer keep counts for a global target ``sparsity`` over all layers.

    Args:
        method: a registered method's name (:func:`slamp_deploy.prune.methods.available_methods`).
        weights: layer name -> weight tensor (current values; pruned ones are zero).
        alive: layer name -> bool mask of weights not yet pruned.
        sparsity: target fraction of zeros over all prunable weights, in [0, 1).
        lambdas: SLAMP's temporal factor per layer (read by methods with ``uses_lambdas``).
        order: layer names in network order (first and last matter for ``uniform+``).
        caps: a chip's caps; then the plan carries each layer's exact mask.

    Returns:
        The plan; uncapped, the global total equals ``round(N * (1 - sparsity))`` up to ties and
        layers that cannot keep more than they have alive.

    Raises:
        UnknownTargetError: ``method`` is not registered.
        UsageError: ``sparsity`` is outside [0, 1).
    """
    m = get_method(method)
    if not 0.0 <= sparsity < 1.0:
        raise UsageError(f"--sparsity {sparsity}: must be in [0, 1)")
    names = list(order or weights)
    n_total = sum(weights[n].numel() for n in names)
    n_alive = {n: int(alive[n].sum()) for n in names}
    k = min(global_keep(n_total, sparsity), sum(n_alive.values()))
    if isinstance(m, ScoreMethod):
        factor = {n: float((lambdas or {}).get(n, 1.0)) if m.uses_lambdas else 1.0
                  for n in names}
        counts, binding = _score_counts(m, weights, alive, n_alive, names, factor, k)
    else:  # register_method admits only ScoreMethod and DensityMethod subclasses
        assert isinstance(m, DensityMethod)
        factor, counts = _density_counts(m, weights, names, n_alive, k / max(n_total, 1))
        binding = {n: m.threshold_binding() for n in names}
    if caps is not None:
        return _capped_plan(m, weights, alive, factor, counts, caps)
    layers = tuple(LayerPlan(name=n, n_weights=weights[n].numel(), n_alive=n_alive[n],
                             n_kept=counts[n], binding=binding[n], layer_score=factor[n],
                             mask=_own_mask(m, weights[n], alive[n], factor[n], counts[n]))
                   for n in names)
    return PruningPlan(method=m.name, layers=layers, keep_requested=k,
                       n_kept=sum(counts.values()), n_weights=n_total,
                       n_alive=sum(n_alive.values()))


def _score_counts(m: ScoreMethod, weights: Mapping[str, torch.Tensor],
                  alive: Mapping[str, torch.Tensor], n_alive: Mapping[str, int],
                  names: Sequence[str], factor: Mapping[str, float], k: int
                  ) -> tuple[dict[str, int], dict[str, str]]:
    """The global top-k by score, and each layer's binding."""
    counts = _topk_counts(m, {n: weights[n].detach() * alive[n] for n in names}, factor, k)
    binding = {n: m.threshold_binding() for n in names}
    # No layer is ever emptied. Under LAMP every layer's largest weight scores 1 and all
    # others score <= 1/2, so this only bites when k < number of layers; under SLAMP a
    # layer with a large lambda can outscore another layer's maximum (0.5 * lambda > 1),
    # and global magnitude ignores layers altogether, so keep one weight per layer.
    for n in names:
        if counts[n] == 0 and n_alive[n] > 0:
            counts[n] = 1
            binding[n] = "min_one_per_layer"
    return counts, binding


def _density_counts(m: DensityMethod, weights: Mapping[str, torch.Tensor], names: Sequence[str],
                    n_alive: Mapping[str, int], density: float
                    ) -> tuple[dict[str, float], dict[str, int]]:
    """The method's per-layer densities and the keep counts they round to (at least one)."""
    shapes = {n: tuple(weights[n].shape) for n in names}
    dens = m.densities(shapes, density, names)
    counts = {n: min(n_alive[n], max(1, round(dens[n] * weights[n].numel()))) for n in names}
    return dict(dens), counts


def _own_mask(m: PruningMethod, weight: torch.Tensor, alive: torch.Tensor, lam: float,
              keep: int) -> np.ndarray | None:
    """A score method's own top ``keep`` of the layer where its order is not the magnitude's
    (ties: lower flat index); None where the magnitude mask of the count is the same thing."""
    if m.magnitude_order or not isinstance(m, ScoreMethod):
        return None
    s = m.scores(weight.detach().cpu() * alive, lam).flatten()
    s = torch.where(alive.flatten(), s, torch.tensor(-1.0, dtype=s.dtype))
    mask = torch.zeros(s.numel(), dtype=torch.bool)
    mask[torch.sort(-s, stable=True).indices[:keep]] = True
    out = (mask & alive.flatten()).reshape(weight.shape).numpy()
    out.setflags(write=False)
    return out


def _topk_counts(m: ScoreMethod, weights: Mapping[str, torch.Tensor], lam: Mapping[str, float],
                 k: int) -> dict[str, int]:
    """How many of each layer's weights fall in the global top-k by score (stable ties).

    One sort per layer and a bisection on the threshold's float64 bit pattern (no global sort,
    no concatenation: about one sort of all weights in time, see docs/benchmarks.md). Ties at
    the threshold go to layers in order, as a stable global sort would give them.
    """
    names = list(weights)
    neg = [m.sorted_scores(weights[n], lam[n]) for n in names]
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


def score_arrays(method: str, weights: Mapping[str, torch.Tensor],
                 alive: Mapping[str, torch.Tensor], lambdas: Mapping[str, float]
                 ) -> dict[str, np.ndarray]:
    """Per-weight scores of a score method (0 for pruned weights), as numpy arrays on the CPU."""
    m = get_method(method)
    if not isinstance(m, ScoreMethod):
        raise UsageError(f"method {method!r} gives layer densities, not per-weight scores; "
                         f"use one of {', '.join(available_methods('score'))}")
    return {n: m.scores(w.detach().cpu() * alive[n],
                        float(lambdas.get(n, 1.0)) if m.uses_lambdas else 1.0).numpy()
            for n, w in weights.items()}


def _capped_plan(m: PruningMethod, weights: Mapping[str, torch.Tensor],
                 alive: Mapping[str, torch.Tensor], factor: Mapping[str, float],
                 counts: Mapping[str, int], caps: ChipCaps) -> PruningPlan:
    """The method's counts through the chip's caps, with the method's bindings and scores.

    Score methods keep the global count and let the caps move weights between layers; density
    methods keep each layer's count as a per-layer cap, in one call for all layers (joined
    layers share caps).
    """
    if isinstance(m, ScoreMethod):
        scores = score_arrays(m.name, weights, alive, factor)
        raw = allocate_capped(scores, caps.layers, caps.caps, sum(counts.values()))
    else:
        scores = {g.name: (weights[g.name].detach().cpu().abs().double() * alive[g.name]).numpy()
                  for g in caps.layers if g.kind != IDENTITY}
        raw = allocate_capped(scores, caps.layers, caps.caps, None,
                              extra_caps={k: LayerCaps(layer_max=v) for k, v in counts.items()})
    layers = tuple(replace(lay, binding=_method_binding(m, lay.binding),
                           layer_score=factor[lay.name]) for lay in raw.layers)
    return replace(raw, method=m.name, layers=layers)


def _method_binding(m: PruningMethod, level: str) -> str:
    # a density method's per-layer count is its density, passed as the layer cap
    if level in ("global", "none") or (level == "layer" and m.kind == "density"):
        return m.threshold_binding()
    return f"cap.{level}"


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Rank of each element among earlier elements of the same group (input in score order)."""
    n = groups.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Unique keys (group, position) sort the same with any algorithm: no stable sort needed.
    key = groups.astype(np.int64) * n + np.arange(n, dtype=np.int64)
    idx = np.argsort(key)
    g = groups[idx]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    start_of = np.repeat(first, np.diff(np.r_[first, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[idx] = np.arange(n, dtype=np.int64) - start_of
    return rank


@dataclass(slots=True)
class _Flat:
    """Every layer's scores flattened into one index space, with rows, groups and caps."""

    scores: list[np.ndarray] = field(default_factory=list)
    offsets: list[int] = field(default_factory=lambda: [0])
    row_len: list[int] = field(default_factory=list)
    row_base: list[int] = field(default_factory=lambda: [0])
    group_ids: list[np.ndarray] = field(default_factory=list)
    n_groups: int = 0
    caps: list[LayerCaps] = field(default_factory=list)
    alive: list[np.ndarray] = field(default_factory=list)
    pre_refused: list[np.ndarray] = field(default_factory=list)  # alive, refused by fan-in


@dataclass(slots=True)
class _Greedy:
    """The weights in score order and where the filter refused them (-1: kept)."""

    all_scores: np.ndarray  # every layer's flat scores, concatenated
    order: np.ndarray  # flat indices of the candidates, best first
    lay_o: np.ndarray  # layer of each
    refused_at: np.ndarray  # int8 level index
    surv: np.ndarray  # bool


def allocate_capped(
    scores: Mapping[str, np.ndarray],
    layers: Sequence[LayerGeometry],
    caps: Mapping[str, LayerCaps] | None,
    keep: int | None,
    *,
    extra_caps: Mapping[str, LayerCaps] | None = None,
) -> PruningPlan:
    """Keep the highest-scoring weights subject to ``keep`` and every cap.

    Args:
        scores: per layer name, an array of the weight's shape; higher = more important, 0 for an
            already-pruned weight (never kept). Weights whose ``layer.mask`` is False are never
            kept either.
        layers: the layers, as built for :func:`slamp_deploy.fit.check.check_fit`.
        caps: the chip's caps per layer name (``profile_caps``; ``None``: only ``keep`` and
            ``extra_caps``).
        keep: global number of weights to keep; ``None`` = as many as the caps allow.
        extra_caps: further caps per layer name, merged with ``caps`` (the tighter wins).

    Returns:
        A :class:`PruningPlan` without a method: bindings are cap levels (or ``"none"``), every
        layer carries its mask; no cap is ever exceeded.

    Raises:
        ModelError: a score array is missing, has the wrong shape, or holds NaN or negatives.
    """
    if keep is not None and keep < 0:
        raise ModelError(f"keep = {keep}: must be a non-negative integer")
    extra = dict(extra_caps or {})
    unknown = sorted(set(extra) - {lay.name for lay in layers})
    if unknown:
        raise ModelError(f"extra_caps names unknown layers: {', '.join(unknown)}")
    layers = [lay for lay in layers if lay.kind != IDENTITY]  # nothing to prune there
    primary = _primaries(layers)
    flat = _Flat()
    for li, lay in enumerate(layers):
        _add_layer(flat, li, lay, _layer_scores(scores, lay), _merged_caps(lay.name, caps, extra),
                   primary)
    greedy = _filter(flat, primary, keep)
    return _plan_of(flat, greedy, layers, keep)


def _primaries(layers: Sequence[LayerGeometry]) -> dict[int, int]:
    """Joined layer -> the first layer of its population (joined layers must share their rows)."""
    primary: dict[int, int] = {}
    for group in population_members(layers).values():
        if len(group) < 2:
            continue
        for i in group:
            if layers[i].mask.shape[0] != layers[group[0]].mask.shape[0]:
                raise ModelError(f"layer {layers[i].name!r}: {layers[i].mask.shape[0]} weight "
                                 f"rows, but layer {layers[group[0]].name!r}, joined into the "
                                 f"same neurons, has {layers[group[0]].mask.shape[0]}")
            primary[i] = group[0]
    return primary


def _layer_scores(scores: Mapping[str, np.ndarray], lay: LayerGeometry) -> np.ndarray:
    """The layer's scores, checked and flattened to float64."""
    if lay.name not in scores:
        raise ModelError(f"no scores for layer {lay.name!r}")
    sc = np.asarray(scores[lay.name])
    if sc.shape != lay.mask.shape:
        raise ModelError(
            f"layer {lay.name!r}: scores shape {sc.shape} != weight shape {lay.mask.shape}"
        )
    sc = sc.astype(np.float64, copy=False).reshape(-1)
    if np.isnan(sc).any() or (sc < 0).any():
        raise ModelError(f"layer {lay.name!r}: scores must be non-negative numbers (no NaN)")
    return sc


def _merged_caps(name: str, caps: Mapping[str, LayerCaps] | None,
                 extra: Mapping[str, LayerCaps]) -> LayerCaps:
    c = (caps or {}).get(name, LayerCaps())
    return c.merge(extra[name]) if name in extra else c


def _add_layer(flat: _Flat, li: int, lay: LayerGeometry, sc: np.ndarray, c: LayerCaps,
               primary: Mapping[int, int]) -> None:
    """Append one layer to the flat index space, filtering its rows by fan-in if it can."""
    flat.caps.append(c)
    flat.scores.append(sc)
    alive_l = (sc > 0) & lay.mask.reshape(-1)
    n_rows = lay.mask.shape[0]
    if (li not in primary and c.fan_in_max is not None and n_rows
            and c.fan_in_max < sc.size // n_rows):
        # Fan-in level first, per row (cheap), so the global sort sees only its survivors.
        # Refused-but-alive weights are recorded in pre_refused for the binding report.
        key = np.where(alive_l, -sc, np.inf).reshape(n_rows, -1)
        rank = np.empty(key.shape, dtype=np.int64)
        np.put_along_axis(
            rank, np.argsort(key, axis=1, kind="stable"), np.arange(key.shape[1])[None, :], 1
        )
        over = alive_l & (rank.reshape(-1) >= c.fan_in_max)
        flat.pre_refused.append(over)
        alive_l = alive_l & ~over
    else:
        flat.pre_refused.append(np.zeros(sc.size, dtype=bool))
    flat.alive.append(alive_l)
    flat.offsets.append(flat.offsets[-1] + sc.size)
    flat.row_len.append(sc.size // n_rows if n_rows else 0)
    flat.row_base.append(flat.row_base[-1] + n_rows)
    flat.group_ids.append(_row_groups(flat, li, lay, c, primary))


def _row_groups(flat: _Flat, li: int, lay: LayerGeometry, c: LayerCaps,
                primary: Mapping[int, int]) -> np.ndarray:
    """Core group of each row (a joined layer's rows share its population's groups)."""
    n_rows = lay.mask.shape[0]
    if li in primary and primary[li] != li:
        return flat.group_ids[primary[li]]
    if c.group_starts is not None:
        starts = np.asarray(c.group_starts, dtype=np.int64)
        if starts.size == 0 or starts[0] != 0 or (np.diff(starts) <= 0).any():
            raise ModelError(f"layer {lay.name!r}: group_starts must start at 0 and increase")
        gid = np.searchsorted(starts, np.arange(n_rows), side="right") - 1
        out = gid + flat.n_groups
        flat.n_groups += starts.size
        return out
    out = np.arange(n_rows) + flat.n_groups  # one group per row, no cap
    flat.n_groups += n_rows
    return out


def _per_layer(values: list[int | None]) -> np.ndarray:
    return np.asarray([_INF if v is None else v for v in values], dtype=np.int64)


def _filter(flat: _Flat, primary: Mapping[int, int], keep: int | None) -> _Greedy:
    """Sort the candidates by score and filter them level by level, innermost first."""
    n_layers = len(flat.caps)
    all_scores = np.concatenate(flat.scores) if flat.scores else np.zeros(0)
    alive = np.concatenate(flat.alive) if flat.alive else np.zeros(0, bool)
    layer_of = np.repeat(np.arange(n_layers), np.diff(flat.offsets)).astype(np.int64)
    cand = np.flatnonzero(alive)
    # Score order, ties by flat index: a stable sort of -score over increasing indices.
    order = cand[np.argsort(-all_scores[cand], kind="stable")]
    lay_o = layer_of[order]
    local = order - np.asarray(flat.offsets[:-1], dtype=np.int64)[lay_o] if n_layers else order
    rl_arr = np.asarray(flat.row_len, dtype=np.int64)
    row_local = local // np.maximum(rl_arr[lay_o], 1)
    row_global = np.asarray(flat.row_base[:-1], dtype=np.int64)[lay_o] + row_local
    row_group = np.concatenate(flat.group_ids) if flat.group_ids else np.zeros(0, np.int64)
    g = _Greedy(all_scores=all_scores, order=order, lay_o=lay_o,
                refused_at=np.full(order.size, -1, dtype=np.int8),
                surv=np.ones(order.size, dtype=bool))
    if primary:  # joined rows: one fan-in cap over the same row of every joined layer
        alias = np.asarray([flat.row_base[primary.get(li, li)] for li in range(n_layers)],
                           dtype=np.int64)
        fmax = _per_layer([c.fan_in_max if li in primary else None
                           for li, c in enumerate(flat.caps)])
        if (fmax[lay_o] < _INF).any():
            _apply(g, 0, alias[lay_o] + row_local, fmax[lay_o])
    gmax = _per_layer([c.group_max if c.group_starts is not None else None for c in flat.caps])
    if (gmax[lay_o] < _INF).any():
        _apply(g, 1, row_group[row_global], gmax[lay_o])
    lmax = _per_layer([c.layer_max for c in flat.caps])
    if (lmax[lay_o] < _INF).any():
        _apply(g, 2, lay_o, lmax[lay_o])
    if keep is not None:
        bad = np.flatnonzero(g.surv)[keep:]
        g.refused_at[bad] = 3
        g.surv[bad] = False
    return g


def _apply(g: _Greedy, level: int, ids: np.ndarray, cap_of_elem: np.ndarray) -> None:
    """Refuse, at ``level``, the survivors ranked at or past their group's cap."""
    idx = np.flatnonzero(g.surv)
    rank = _rank_within(ids[idx])
    bad = rank >= cap_of_elem[idx]
    g.refused_at[idx[bad]] = level
    g.surv[idx[bad]] = False


def _plan_of(flat: _Flat, g: _Greedy, layers: Sequence[LayerGeometry],
             keep: int | None) -> PruningPlan:
    """The kept masks, refusal counts and binding level of every layer."""
    kept_flat = np.zeros(flat.offsets[-1], dtype=bool)
    kept_flat[g.order[g.surv]] = True
    pre = np.concatenate(flat.pre_refused) if flat.pre_refused else np.zeros(0, bool)
    out_layers = []
    for li, lay in enumerate(layers):
        a, b = flat.offsets[li], flat.offsets[li + 1]
        mask = kept_flat[a:b].reshape(lay.mask.shape).copy()
        mask.setflags(write=False)
        in_layer = g.lay_o == li
        lvl = g.refused_at[in_layer]
        pre_l = pre[a:b]
        counts = ([int(pre_l.sum()) + int((lvl == 0).sum())]
                  + [int((lvl == i).sum()) for i in range(1, len(LEVELS))])
        out_layers.append(LayerPlan(
            name=lay.name,
            n_weights=b - a,
            n_alive=int(in_layer.sum()) + int(pre_l.sum()),
            n_kept=int(mask.sum()),
            binding=_binding_level(flat, g, li, in_layer, lvl, pre_l),
            refused=tuple(zip(LEVELS, counts, strict=True)),
            caps=flat.caps[li],
            mask=mask,
        ))
    return PruningPlan(
        method=None,
        layers=tuple(out_layers),
        keep_requested=keep,
        n_kept=int(g.surv.sum()),
        n_weights=flat.offsets[-1],
        n_alive=int(g.order.size) + int(pre.sum()),
    )


def _binding_level(flat: _Flat, g: _Greedy, li: int, in_layer: np.ndarray, lvl: np.ndarray,
                   pre_l: np.ndarray) -> str:
    """The level that refused the layer's best refused weight (score desc, index); "none"."""
    a = flat.offsets[li]
    best: tuple[float, int, str] | None = None
    first_refused = np.flatnonzero(lvl >= 0)
    if first_refused.size:
        pos = int(np.flatnonzero(in_layer)[first_refused[0]])
        best = (
            -float(g.all_scores[g.order[pos]]),
            int(g.order[pos]),
            LEVELS[int(lvl[first_refused[0]])],
        )
    if pre_l.any():
        cand_pre = np.flatnonzero(pre_l)
        top = cand_pre[np.argmax(flat.scores[li][cand_pre])]  # first maximum = lowest index
        mine = (-float(flat.scores[li][top]), a + int(top), LEVELS[0])
        best = mine if best is None or mine < best else best
    return best[2] if best is not None else "none"
