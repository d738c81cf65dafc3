"""The fit stage of a run: the chip's caps on a traced graph (for the capped allocation), the
fit check of the final masks, and the bisection for the largest keep count that fits (``--fit``).

Sits between the pruning core (which knows nothing of chips) and the pipeline.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from slamp_deploy.chips.family import family_of, profile_caps
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import FitReport, Violation
from slamp_deploy.errors import InfeasibleTargetError, ModelError, SlampWarning, UsageError
from slamp_deploy.fit.check import check_fit
from slamp_deploy.fit.from_graph import geometries
from slamp_deploy.fit.placement import hidden_orders, permute_graph, permute_layers
from slamp_deploy.geometry import LayerCaps, LayerGeometry, with_masks
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.prune.allocate import ChipCaps, allocate_capped, score_arrays
from slamp_deploy.prune.methods import available_methods, get_method
from slamp_deploy.prune.plan import PruningPlan

MIN_KEEP_FRACTION = 0.001  # find_fit_keep gives up below 0.1% of the alive weights


def caps_blocked(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
                 profile: HardwareProfile) -> str | None:
    """Why the profile's caps are not applied to this graph's allocation, or None.

    Residual joins of currents share their caps (slamp_deploy.prune.allocate); a join the fit
    checker cannot map (spikes summed after the neurons, a pooled shortcut) blocks them, if
    there are any.
    """
    try:
        geometries(graph, alive)
    except ModelError as e:
        if _any_caps(geometries(graph, alive, wiring=False), profile):
            return str(e).removeprefix("fit check: ")
    return None


def _binds(caps: Mapping[str, LayerCaps]) -> bool:
    return any(c.fan_in_max is not None or c.group_max is not None for c in caps.values())


def _any_caps(geoms: list[LayerGeometry], profile: HardwareProfile) -> bool:
    return _binds(profile_caps(geoms, profile))


def chip_caps(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
              profile: HardwareProfile) -> ChipCaps | None:
    """The profile's caps on this graph, for :func:`slamp_deploy.prune.allocate.allocate`.

    None where the profile puts no count cap (fan-in, core synapse budget) on any layer, or where
    its caps cannot be mapped onto the graph (:func:`caps_blocked` says why).
    """
    try:
        geoms = geometries(graph, alive)
    except ModelError:
        return None
    caps = profile_caps(geoms, profile)
    return ChipCaps(layers=tuple(geoms), caps=caps) if _binds(caps) else None


def fit_keep(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
             alive: Mapping[str, torch.Tensor], profile: HardwareProfile,
             chips: int | None, cores: int | None) -> tuple[int, PruningPlan, FitReport]:
    """The most weights (smallest sparsity) with which the model fits the target."""
    if get_method(method).kind != "score":
        raise UsageError(f"--fit --method {method}: the fit search needs a score-based method "
                         f"({', '.join(available_methods('score'))}); pass --sparsity instead")
    fixed = apply_fit_remedies(graph, alive, profile)
    if fixed:
        warnings.warn(f"--fit on {profile.name}: {'; '.join(fixed)} (retrained with the "
                      "masks when --epochs > 0)", SlampWarning, stacklevel=2)
    weights = {la.name: la.weight for la in graph.layers}
    return find_fit_keep(score_arrays(method, weights, alive, lambdas), geometries(graph, alive),
                         profile, chips, cores)


def _drop_bias(graph: SpikingGraph, layer: str) -> str:
    graph.layer(layer).module.register_parameter("bias", None)
    return f"dropped the bias of layer {layer!r}"


#: rule -> the change ``--fit`` makes to the model where that rule is violated (rules pruning
#: cannot relieve but a small change to the model can; the verdict's remedy names it)
FIT_REMEDIES = {"xylo.biases": _drop_bias}


def apply_fit_remedies(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
                       profile: HardwareProfile) -> list[str]:
    """Apply :data:`FIT_REMEDIES` to the rules the dense model violates; what was done."""
    try:
        geoms = geometries(graph, alive)
    except ModelError:
        return []
    rep = check_fit(permute_layers(geoms, hidden_orders(geoms, profile)), profile)
    return [FIT_REMEDIES[v.rule](graph, v.layer) for v in rep.violations
            if v.rule in FIT_REMEDIES and v.layer is not None]


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
        return _attempt(scores, layers, caps, k, profile, chips, cores, extra_caps)

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


def _attempt(scores: Mapping[str, np.ndarray], layers: Sequence[LayerGeometry],
             caps: Mapping[str, LayerCaps], k: int | None, profile: HardwareProfile,
             chips: int | None, cores: int | None,
             extra_caps: Mapping[str, LayerCaps] | None = None) -> tuple[PruningPlan, FitReport]:
    """The capped allocation keeping ``k`` weights (None: all) and its fit check."""
    alloc = allocate_capped(scores, layers, caps, k, extra_caps=extra_caps)
    masked = with_masks(layers, alloc.masks)
    # checked in the order the run exports (place_neurons): a permutation is free
    report = check_fit(permute_layers(masked, hidden_orders(masked, profile)), profile,
                       chips=chips, cores=cores)
    return alloc, report


def blocking_violations(graph: SpikingGraph, alive: Mapping[str, torch.Tensor], method: str,
                        lambdas: Mapping[str, float], profile: HardwareProfile,
                        chips: int | None, cores: int | None) -> list[Violation]:
    """What stops :func:`find_fit_keep` on this graph, without its bisection: the rules pruning
    cannot relieve on the dense check, else the violations at the lowest keep count it tries
    (empty: some keep count fits). The structure search (``slamp_deploy.fit.structured``)
    calls it on every compact model it tries."""
    layers = geometries(graph, alive)
    # a rule pruning cannot relieve fails on any mask: the dense check finds it, no scores needed
    dense = check_fit(permute_layers(layers, hidden_orders(layers, profile)), profile,
                      chips=chips, cores=cores)
    hard = [v for v in dense.violations if not v.relievable]
    if hard or dense.fits:
        return hard
    weights = {la.name: la.weight for la in graph.layers}
    scores = score_arrays(method, weights, alive, lambdas)
    caps = profile_caps(layers, profile)
    top_alloc, top = _attempt(scores, layers, caps, None, profile, chips, cores)
    hard = [v for v in top.violations if not v.relievable]
    if hard or top.fits:
        return hard
    lo = min(top_alloc.n_kept - 1, max(1, math.ceil(MIN_KEEP_FRACTION * top_alloc.n_alive)))
    return list(_attempt(scores, layers, caps, lo, profile, chips, cores)[1].violations)


def check_masks(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], profile: HardwareProfile,
                chips: int | None, cores: int | None) -> FitReport:
    """Check the final masks against the chip.

    Raises:
        ModelError: a residual join the checker cannot map, or a mapper that maps no joins.
    """
    return check_fit(geometries(graph, masks), profile, chips=chips, cores=cores)


def place_neurons(graph: SpikingGraph, masks: dict[str, torch.Tensor],
                  profile: HardwareProfile) -> dict[int, list[int]]:
    """Renumber hidden neurons, in place, where the chip reads them by position (Xylo's
    expansion neurons, :mod:`slamp_deploy.fit.placement`): the model, its masks and so its
    exports carry the order. Returns layer index -> the order applied (empty: none needed)."""
    try:
        geoms = geometries(graph, masks)
    except ModelError:
        return {}
    orders = hidden_orders(geoms, profile)
    permute_graph(graph, masks, orders)
    return {i: [int(x) for x in o] for i, o in orders.items()}


def refuse_unmappable(model: torch.nn.Module, profile: HardwareProfile) -> None:
    """Refuse, in one line naming the layer and the rule, a layer the target's family cannot map
    at all (a recurrent layer on a feed-forward-only chip such as Speck), before tracing.

    Raises:
        InfeasibleTargetError: the model has such a layer (exit 3).
    """
    rule = family_of(profile).feed_forward
    if rule is None:
        return
    import snntorch as snn

    for name, m in model.named_modules():
        if isinstance(m, (snn.RLeaky, snn.RSynaptic)):
            raise InfeasibleTargetError(
                f"layer {name!r}: {rule[0]} violated: snn.{type(m).__name__} is recurrent and "
                f"{profile.name} maps no recurrent layer; {rule[1]}")
