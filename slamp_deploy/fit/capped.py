"""The caps a chip profile puts on each layer's kept weights, and the fit search over them.

:func:`profile_caps` turns a profile into per-layer :class:`LayerCaps` (fan-in, core synapse
budget); the laminar capped greedy that honours them lives in
:func:`slamp_deploy.prune.allocate.allocate_capped` (its docstring explains the cap levels);
:func:`find_fit_keep` bisects its keep count against :func:`slamp_deploy.fit.check_fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slamp_deploy.chips.hardware import HardwareProfile
from slamp_deploy.errors import InfeasibleTargetError
from slamp_deploy.fit.check import (
    IDENTITY,
    FitReport,
    LayerGeometry,
    _replace_masks,
    check_fit,
    core_starts,
)
from slamp_deploy.prune.allocate import allocate_capped
from slamp_deploy.prune.plan import PruningPlan

__all__ = [
    "LayerCaps",
    "find_fit_keep",
    "profile_caps",
]

MIN_KEEP_FRACTION = 0.001  # find_fit_keep gives up below 0.1% of the alive weights


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerCaps:
    """Caps on one layer's kept weights. ``None`` = no cap at that level."""

    fan_in_max: int | None = None  # kept per weight row
    group_starts: tuple[int, ...] | None = None  # first row of each core group (laminar in rows)
    group_max: int | None = None  # kept per core group
    layer_max: int | None = None  # kept in the layer

    def merge(self, other: LayerCaps) -> LayerCaps:
        """The tighter of two cap sets (groups: ``other``'s if it defines any)."""

        def lo(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        if other.group_starts is not None:
            starts, gmax = other.group_starts, other.group_max
        else:
            starts, gmax = self.group_starts, lo(self.group_max, other.group_max)
        return LayerCaps(
            fan_in_max=lo(self.fan_in_max, other.fan_in_max),
            group_starts=starts,
            group_max=gmax,
            layer_max=lo(self.layer_max, other.layer_max),
        )


def profile_caps(layers: Sequence[LayerGeometry], profile: HardwareProfile) -> dict[str, LayerCaps]:
    """The count caps a profile imposes on each layer (see the module docstring)."""
    fan_in = profile.neuron.fan_in_max.as_int()
    out: dict[str, LayerCaps] = {}
    npc = profile.core.neurons_max.as_int()
    budget = profile.core.synapses_max.as_int()
    per_core = (
        profile.mapper in ("loihi", "truenorth", "spinnaker")
        and profile.core.synapse_encoding.value in ("count", "crossbar")
        and npc is not None
        and budget is not None
    )
    ident: dict[str, int] = {}  # population -> identity shortcuts into it
    size: dict[str, int] = {}  # population -> layers joined into it
    for lay in layers:
        if lay.population is not None:
            counts = ident if lay.kind == IDENTITY else size
            counts[lay.population] = counts.get(lay.population, 0) + 1
    for lay in layers:
        if lay.kind == IDENTITY:
            continue
        taken = ident.get(lay.population, 0) if lay.population is not None else 0
        joined = lay.population is not None and (taken or size.get(lay.population, 0) > 1)
        f_in = None if fan_in is None else max(fan_in - taken, 0)
        caps = LayerCaps(fan_in_max=f_in)
        if per_core and npc is not None and budget is not None:
            n_rows = lay.mask.shape[0]
            if lay.kind == "linear":
                k = max(1, -(-n_rows // npc))
                row_max = lay.mask.shape[1] if f_in is None else min(f_in, lay.mask.shape[1])
                g_budget = max(budget - taken * -(-n_rows // k), 0)
                # otherwise the cap cannot bind (a joined group may gather several layers' rows)
                if joined or g_budget < -(-n_rows // k) * row_max:
                    starts = tuple(int(s) for s in core_starts(n_rows, k))
                    caps = LayerCaps(fan_in_max=f_in, group_starts=starts, group_max=g_budget)
            else:
                row_cap = max(budget // npc - taken, 0)
                if joined or row_cap < int(np.prod(lay.mask.shape[1:])):
                    caps = LayerCaps(fan_in_max=row_cap if f_in is None else min(f_in, row_cap))
        out[lay.name] = caps
    return out


def find_fit_keep(
    scores: Mapping[str, np.ndarray],
    layers: Sequence[LayerGeometry],
    profile: HardwareProfile,
    chips: int | None = None,
    cores: int | None = None,
    *,
    extra_caps: Mapping[str, LayerCaps] | None = None,
) -> tuple[int, PruningPlan, FitReport]:
    """The largest keep count (smallest sparsity) at which the model fits, by bisection.

    Allocations for growing ``keep`` are nested (the greedy only extends its prefix), so the
    verdict of :func:`check_fit` flips once; the bisection finds the last passing count and the
    returned report is the check of the returned masks.

    Raises:
        InfeasibleTargetError: a rule pruning cannot relieve is violated (neuron counts, Speck's
            shape-only memories, unsupported layers), or even 0.1% of the weights do not fit.
    """

    def attempt(k: int | None) -> tuple[PruningPlan, FitReport]:
        alloc = allocate_capped(scores, layers, caps, k, extra_caps=extra_caps)
        report = check_fit(_replace_masks(layers, alloc.masks), profile, chips=chips, cores=cores)
        return alloc, report

    caps = profile_caps(layers, profile)
    top_alloc, top_report = attempt(None)
    hard = [v for v in top_report.violations if not v.relievable]
    if hard:
        v = hard[0]
        raise InfeasibleTargetError(f"{v.message}: pruning cannot relieve this rule; {v.remedy}")
    if top_report.fits:
        return top_alloc.n_kept, top_alloc, top_report
    hi = top_alloc.n_kept  # fails
    lo = min(hi - 1, max(1, math.ceil(MIN_KEEP_FRACTION * top_alloc.n_alive)))
    lo_alloc, lo_report = attempt(lo)
    if not lo_report.fits:
        v = lo_report.violations[0]
        raise InfeasibleTargetError(
            f"{v.message} even when keeping only {lo:,} of {top_alloc.n_alive:,} weights "
            f"(99.9% sparsity); {v.remedy}"
        )
    best = (lo, lo_alloc, lo_report)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        alloc, report = attempt(mid)
        if report.fits:
            lo, best = mid, (mid, alloc, report)
        else:
            hi = mid
    return best
