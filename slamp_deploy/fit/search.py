"""The chip side of a run: layer geometry, cap-aware allocation, the fit check, and export.

Sits between the pruning core (which knows nothing of chips or file formats) and the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from slamp_deploy.chips.family import profile_caps
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.errors import InfeasibleTargetError, ModelError, UsageError
from slamp_deploy.fit.capped import CappedAllocation, allocate_capped
from slamp_deploy.fit.check import check_fit
from slamp_deploy.fit.from_graph import geometries
from slamp_deploy.fit.verdict import FitReport
from slamp_deploy.geometry import IDENTITY, LayerCaps, LayerGeometry, with_masks
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.prune.scores import lamp_scores

SCORE_METHODS = ("slamp", "lamp", "global")
MIN_KEEP_FRACTION = 0.001  # find_fit_keep gives up below 0.1% of the alive weights


def score_arrays(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
                 alive: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-weight scores of a score-based method (0 for pruned weights), as numpy arrays."""
    out = {}
    for la in graph.layers:
        w = la.weight.detach().cpu() * alive[la.name]
        if method == "global":
            s = w.abs().double()
        else:
            s = lamp_scores(w) * (float(lambdas.get(la.name, 1.0)) if method == "slamp" else 1.0)
        out[la.name] = s.numpy()
    return out


def has_caps(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
             profile: HardwareProfile) -> bool:
    """Does the profile put any count cap on any layer (fan-in, core synapse budget)?

    False where the caps cannot be mapped onto the graph (:func:`caps_blocked`).
    """
    try:
        return _any_caps(geometries(graph, alive), profile)
    except ModelError:
        return False


def caps_blocked(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
                 profile: HardwareProfile) -> str | None:
    """Why the profile's caps are not applied to this graph's allocation, or None.

    Residual joins of currents share their caps (slamp_deploy.capped); a join the fit checker
    cannot map (spikes summed after the neurons, a pooled shortcut) blocks them, if there are any.
    """
    try:
        geometries(graph, alive)
    except ModelError as e:
        if _any_caps(geometries(graph, alive, wiring=False), profile):
            return str(e).removeprefix("fit check: ")
    return None


def _any_caps(geoms: list[LayerGeometry], profile: HardwareProfile) -> bool:
    caps = profile_caps(geoms, profile)
    return any(c.fan_in_max is not None or c.group_max is not None for c in caps.values())


def to_torch(alloc: CappedAllocation) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, dtype=bool)) for k, v in alloc.masks.items()}


def capped_masks(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
                 alive: Mapping[str, torch.Tensor], keep: Mapping[str, int],
                 profile: HardwareProfile) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Masks that honour the profile's caps on top of the method's keep counts.

    Score-based methods keep the global count and let the caps move weights between layers;
    rule-based methods keep each layer's count as a per-layer cap.
    """
    geoms = geometries(graph, alive)
    if method in SCORE_METHODS:
        alloc = allocate_capped(score_arrays(graph, method, lambdas, alive), geoms, profile,
                                sum(keep.values()))
        return to_torch(alloc), {k: _binding(v, method) for k, v in alloc.binding.items()}
    # one call for all layers (joined layers share caps), each layer's count as its own cap
    scores = {g.name: (graph.layer(g.name).weight.detach().cpu().abs().double()
                       * alive[g.name]).numpy() for g in geoms if g.kind != IDENTITY}
    alloc = allocate_capped(scores, geoms, profile, None,
                            extra_caps={k: LayerCaps(layer_max=v) for k, v in keep.items()})
    return to_torch(alloc), {k: _binding(v, method) for k, v in alloc.binding.items()}


def _binding(level: str, method: str) -> str:
    # a rule-based method's per-layer count is its density, passed as the layer cap
    if level in ("global", "none") or (level == "layer" and method not in SCORE_METHODS):
        return f"{method}.threshold" if method in SCORE_METHODS else f"{method}.density"
    return f"cap.{level}"


def fit_keep(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
             alive: Mapping[str, torch.Tensor], profile: HardwareProfile,
             chips: int | None, cores: int | None) -> tuple[int, CappedAllocation, FitReport]:
    """The most weights (smallest sparsity) with which the model fits the target."""
    if method not in SCORE_METHODS:
        raise UsageError(f"--fit --method {method}: the fit search needs a score-based method "
                         f"({', '.join(SCORE_METHODS)}); pass --sparsity instead")
    return find_fit_keep(score_arrays(graph, method, lambdas, alive), geometries(graph, alive),
                         profile, chips, cores)


def find_fit_keep(
    scores: Mapping[str, np.ndarray],
    layers: Sequence[LayerGeometry],
    profile: HardwareProfile,
    chips: int | None = None,
    cores: int | None = None,
    *,
    extra_caps: Mapping[str, LayerCaps] | None = None,
) -> tuple[int, CappedAllocation, FitReport]:
    """The largest keep count (smallest sparsity) at which the model fits, by bisection.

    Allocations for growing ``keep`` are nested (the greedy only extends its prefix), so the
    verdict of :func:`check_fit` flips once; the bisection finds the last passing count and the
    returned report is the check of the returned masks.

    Raises:
        InfeasibleTargetError: a rule pruning cannot relieve is violated (neuron counts, Speck's
            shape-only memories, unsupported layers), or even 0.1% of the weights do not fit.
    """

    def attempt(k: int | None) -> tuple[CappedAllocation, FitReport]:
        alloc = allocate_capped(scores, layers, profile, k, extra_caps=extra_caps)
        report = check_fit(with_masks(layers, alloc.masks), profile, chips=chips, cores=cores)
        return alloc, report

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


def fit_section(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], profile: HardwareProfile,
                chips: int | None, cores: int | None) -> tuple[FitReport, dict[str, Any]]:
    """Check the final masks against the chip and format the result for the report.

    Raises:
        ModelError: a residual join the checker cannot map, or a mapper that maps no joins.
    """
    rep = check_fit(geometries(graph, masks), profile, chips=chips, cores=cores)
    return rep, {"fits": rep.fits, "summary": rep.summary(), "report": rep.to_dict(),
                 "markdown": fit_markdown(rep)}


def fit_markdown(rep: FitReport) -> str:
    lines = [f"## Fit on {rep.target}", "", f"**{rep.summary()}**", "",
             "| layer | neurons | kept synapses | max fan-in | max fan-out | cores | binding rule "
             "| margin |", "|---|---|---|---|---|---|---|---|"]
    for lf in rep.layers:
        lines.append(f"| {lf.name} | {lf.neurons:,} | {lf.kept_synapses:,} | {lf.max_fan_in} | "
                     f"{lf.max_fan_out} | {'-' if lf.cores is None else lf.cores} | "
                     f"{lf.binding_rule or '-'} | "
                     f"{'-' if lf.binding_margin is None else lf.binding_margin} |")
    for v in rep.violations:
        how = "pruning relieves it" if v.relievable else "pruning cannot relieve it"
        lines.append(f"- violation: {v.message} ({how}; {v.remedy})")
    if rep.not_checked:
        lines.append(f"- not checked ({len(rep.not_checked)} rules, figure unknown): "
                     + ", ".join(sorted({r.rule for r in rep.not_checked})))
    return "\n".join(lines)
