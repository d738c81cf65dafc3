"""Constraint-aware allocation: keep the best-scoring weights without breaking a chip's caps.

The caps form a laminar family (every weight's caps are nested):

    weight row  ⊂  core group of rows  ⊂  layer  ⊂  whole network (global keep count)

* **fan_in** -- at most ``F`` kept per weight row (linear: an output neuron's incoming row;
  conv: an output channel's kernel, which bounds the fan-in of every neuron of that channel).
* **core_synapses** -- at most ``B`` kept per group of rows mapped to one core. For linear
  layers the groups are exactly :func:`slamp_deploy.fit.core_starts` of the neuron-count mapping
  that :func:`slamp_deploy.fit.check_fit` uses; for conv layers (whose kernels serve neurons on
  several cores) the budget becomes a per-row cap of ``B // neurons_per_core``, which bounds any
  core's synapses the same way.
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
from dataclasses import dataclass, field

import numpy as np

from slamp_deploy.chips.family import profile_caps
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.errors import ModelError
from slamp_deploy.geometry import IDENTITY, LayerCaps, LayerGeometry, population_members

__all__ = [
    "LEVELS",
    "CappedAllocation",
    "CappedLayer",
    "allocate_capped",
]

#: Cap levels, innermost first; also the names reported as ``binding``.
LEVELS: tuple[str, ...] = ("fan_in", "core_synapses", "layer", "global")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CappedLayer:
    """The allocation of one layer."""

    name: str
    n_weights: int
    n_alive: int  # weights with a positive score and a True input mask
    n_kept: int
    binding: str  # cap that refused the layer's best refused weight; "none" if none refused
    refused: tuple[tuple[str, int], ...]  # (level, alive weights refused there)
    caps: LayerCaps
    mask: np.ndarray = field(repr=False)  # bool, the weight's shape, read-only

    @property
    def density(self) -> float:
        return self.n_kept / self.n_weights if self.n_weights else 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "n_weights": self.n_weights,
            "n_alive": self.n_alive,
            "n_kept": self.n_kept,
            "binding": self.binding,
            "refused": {lvl: n for lvl, n in self.refused},
            "caps": {
                "fan_in_max": self.caps.fan_in_max,
                "groups": None if self.caps.group_starts is None else len(self.caps.group_starts),
                "group_max": self.caps.group_max,
                "layer_max": self.caps.layer_max,
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CappedAllocation:
    """Masks and counts for every layer, in the order of ``layers``."""

    layers: tuple[CappedLayer, ...]
    keep_requested: int | None
    n_kept: int
    n_weights: int
    n_alive: int

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return {lay.name: lay.mask for lay in self.layers}

    @property
    def binding(self) -> dict[str, str]:
        return {lay.name: lay.binding for lay in self.layers}

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n_kept / self.n_weights if self.n_weights else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "keep_requested": self.keep_requested,
            "n_kept": self.n_kept,
            "n_weights": self.n_weights,
            "n_alive": self.n_alive,
            "layers": [lay.to_dict() for lay in self.layers],
        }


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


def allocate_capped(
    scores: Mapping[str, np.ndarray],
    layers: Sequence[LayerGeometry],
    profile: HardwareProfile | None,
    keep: int | None,
    *,
    extra_caps: Mapping[str, LayerCaps] | None = None,
) -> CappedAllocation:
    """Keep the highest-scoring weights subject to ``keep`` and every cap.

    Args:
        scores: per layer name, an array of the weight's shape; higher = more important, 0 for an
            already-pruned weight (never kept). Weights whose ``layer.mask`` is False are never
            kept either.
        layers: the layers, as built for :func:`slamp_deploy.fit.check_fit`.
        profile: the chip whose caps apply (``None``: only ``keep`` and ``extra_caps``).
        keep: global number of weights to keep; ``None`` = as many as the caps allow.
        extra_caps: further caps per layer name, merged with the profile's (the tighter wins).

    Returns:
        A :class:`CappedAllocation`; no cap is ever exceeded.

    Raises:
        ModelError: a score array is missing, has the wrong shape, or holds NaN or negatives.
    """
    if keep is not None and keep < 0:
        raise ModelError(f"keep = {keep}: must be a non-negative integer")
    caps = profile_caps(layers, profile) if profile is not None else {}
    extra = dict(extra_caps or {})
    unknown = sorted(set(extra) - {lay.name for lay in layers})
    if unknown:
        raise ModelError(f"extra_caps names unknown layers: {', '.join(unknown)}")
    layers = [lay for lay in layers if lay.kind != IDENTITY]  # nothing to prune there
    primary: dict[int, int] = {}  # joined layer -> the first layer of its population
    for group in population_members(layers).values():
        if len(group) < 2:
            continue
        for i in group:
            if layers[i].mask.shape[0] != layers[group[0]].mask.shape[0]:
                raise ModelError(f"layer {layers[i].name!r}: {layers[i].mask.shape[0]} weight "
                                 f"rows, but layer {layers[group[0]].name!r}, joined into the "
                                 f"same neurons, has {layers[group[0]].mask.shape[0]}")
            primary[i] = group[0]
    flat_scores, offsets, row_len, row_base, group_id_parts = [], [0], [], [0], []
    n_groups = 0
    layer_caps: list[LayerCaps] = []
    alive_parts: list[np.ndarray] = []
    pre_refused: list[np.ndarray] = []  # alive weights refused by the fan-in level
    for li, lay in enumerate(layers):
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
        c = caps.get(lay.name, LayerCaps())
        if lay.name in extra:
            c = c.merge(extra[lay.name])
        layer_caps.append(c)
        flat_scores.append(sc)
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
            pre_refused.append(over)
            alive_l = alive_l & ~over
        else:
            pre_refused.append(np.zeros(sc.size, dtype=bool))
        alive_parts.append(alive_l)
        offsets.append(offsets[-1] + sc.size)
        rl = sc.size // n_rows if n_rows else 0
        row_len.append(rl)
        row_base.append(row_base[-1] + n_rows)
        # core group of each row (a joined layer's rows share its population's groups)
        if li in primary and primary[li] != li:
            group_id_parts.append(group_id_parts[primary[li]])
        elif c.group_starts is not None:
            starts = np.asarray(c.group_starts, dtype=np.int64)
            if starts.size == 0 or starts[0] != 0 or (np.diff(starts) <= 0).any():
                raise ModelError(f"layer {lay.name!r}: group_starts must start at 0 and increase")
            gid = np.searchsorted(starts, np.arange(n_rows), side="right") - 1
            group_id_parts.append(gid + n_groups)
            n_groups += starts.size
        else:
            group_id_parts.append(np.arange(n_rows) + n_groups)  # one group per row, no cap
            n_groups += n_rows
    n_layers = len(layers)
    total = offsets[-1]
    all_scores = np.concatenate(flat_scores) if flat_scores else np.zeros(0)
    alive = np.concatenate(alive_parts) if alive_parts else np.zeros(0, bool)
    layer_of = np.repeat(np.arange(n_layers), np.diff(offsets)).astype(np.int64)
    pre = np.concatenate(pre_refused) if pre_refused else np.zeros(0, bool)
    cand = np.flatnonzero(alive)
    # Score order, ties by flat index: a stable sort of -score over increasing indices.
    order = cand[np.argsort(-all_scores[cand], kind="stable")]
    lay_o = layer_of[order]
    local = order - np.asarray(offsets[:-1], dtype=np.int64)[lay_o] if n_layers else order
    rl_arr = np.asarray(row_len, dtype=np.int64)
    row_local = local // np.maximum(rl_arr[lay_o], 1)
    row_global = np.asarray(row_base[:-1], dtype=np.int64)[lay_o] + row_local
    row_group = np.concatenate(group_id_parts) if group_id_parts else np.zeros(0, np.int64)
    refused_at = np.full(order.size, -1, dtype=np.int8)
    surv = np.ones(order.size, dtype=bool)

    def apply(level: int, ids: np.ndarray, cap_of_elem: np.ndarray) -> None:
        idx = np.flatnonzero(surv)
        rank = _rank_within(ids[idx])
        bad = rank >= cap_of_elem[idx]
        refused_at[idx[bad]] = level
        surv[idx[bad]] = False

    inf = np.iinfo(np.int64).max

    def per_layer(values: list[int | None]) -> np.ndarray:
        return np.asarray([inf if v is None else v for v in values], dtype=np.int64)

    if primary:  # joined rows: one fan-in cap over the same row of every joined layer
        alias = np.asarray([row_base[primary.get(li, li)] for li in range(n_layers)],
                           dtype=np.int64)
        row_joined = alias[lay_o] + row_local
        fmax = per_layer([c.fan_in_max if li in primary else None
                          for li, c in enumerate(layer_caps)])
        if (fmax[lay_o] < inf).any():
            apply(0, row_joined, fmax[lay_o])
    gmax = per_layer([c.group_max if c.group_starts is not None else None for c in layer_caps])
    if (gmax[lay_o] < inf).any():
        apply(1, row_group[row_global], gmax[lay_o])
    lmax = per_layer([c.layer_max for c in layer_caps])
    if (lmax[lay_o] < inf).any():
        apply(2, lay_o, lmax[lay_o])
    if keep is not None:
        idx = np.flatnonzero(surv)
        bad = idx[keep:]
        refused_at[bad] = 3
        surv[bad] = False

    kept_flat = np.zeros(total, dtype=bool)
    kept_flat[order[surv]] = True
    out_layers = []
    for li, lay in enumerate(layers):
        a, b = offsets[li], offsets[li + 1]
        mask = kept_flat[a:b].reshape(lay.mask.shape).copy()
        mask.setflags(write=False)
        in_layer = lay_o == li
        lvl = refused_at[in_layer]
        pre_l = pre[a:b]
        counts = ([int(pre_l.sum()) + int((lvl == 0).sum())]
                  + [int((lvl == i).sum()) for i in range(1, len(LEVELS))])
        refused = tuple(zip(LEVELS, counts, strict=True))
        # Binding: the level that refused the layer's best refused weight (score desc, index).
        best: tuple[float, int, str] | None = None
        first_refused = np.flatnonzero(lvl >= 0)
        if first_refused.size:
            pos = int(np.flatnonzero(in_layer)[first_refused[0]])
            best = (
                -float(all_scores[order[pos]]),
                int(order[pos]),
                LEVELS[int(lvl[first_refused[0]])],
            )
        if pre_l.any():
            cand_pre = np.flatnonzero(pre_l)
            top = cand_pre[np.argmax(flat_scores[li][cand_pre])]  # first maximum = lowest index
            mine = (-float(flat_scores[li][top]), a + int(top), LEVELS[0])
            best = mine if best is None or mine < best else best
        binding = best[2] if best is not None else "none"
        out_layers.append(
            CappedLayer(
                name=lay.name,
                n_weights=b - a,
                n_alive=int(in_layer.sum()) + int(pre_l.sum()),
                n_kept=int(mask.sum()),
                binding=binding,
                refused=refused,
                caps=layer_caps[li],
                mask=mask,
            )
        )
    return CappedAllocation(
        layers=tuple(out_layers),
        keep_requested=keep,
        n_kept=int(surv.sum()),
        n_weights=total,
        n_alive=int(order.size) + int(pre.sum()),
    )
