"""The chip side of a run: layer geometry, cap-aware allocation, the fit check, and export.

Sits between the pruning core (which knows nothing of chips or file formats) and the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .capped import CappedAllocation, allocate_capped, find_fit_keep, profile_caps
from .errors import ModelError, UsageError
from .fit import FitReport, LayerGeometry, check_fit
from .graph import ADD, NEURON_KINDS, SpikingGraph
from .hardware import HardwareProfile
from .scores import lamp_scores

SCORE_METHODS = ("slamp", "lamp", "global")


def residual_reason(graph: SpikingGraph) -> str | None:
    """Why the fit checker cannot map ``graph`` (it has residual joins), or None."""
    adds = [i for i, op in enumerate(graph.ops) if op.kind == ADD]
    if not adds:
        return None
    i = adds[0]
    neuron = next((graph.ops[j].name for j in graph.downstream(i, through_neurons=False)
                   if graph.ops[j].kind in NEURON_KINDS), None)
    where = f"neurons '{neuron}' sum" if neuron else "the output sums"
    return (f"{where} two inputs (residual join '{graph.ops[i].name}'), and the fit checker maps "
            f"one synaptic layer onto each neuron population; residual networks are not "
            f"checked against chip limits yet")


def geometries(graph: SpikingGraph, masks: Mapping[str, torch.Tensor]) -> list[LayerGeometry]:
    """The neutral per-layer description the fit checker and the capped allocator read."""
    out = []
    for la in graph.layers:
        op = graph.ops[la.op_index]
        m = la.module
        conv = la.kind != "linear"
        out.append(LayerGeometry(
            name=la.name, kind=la.kind, in_shape=tuple(op.in_shape), out_shape=tuple(op.out_shape),
            mask=masks[la.name].detach().cpu().numpy().astype(bool),
            neuron_shape=tuple(la.neuron.out_shape) if la.neuron is not None else (),
            stride=tuple(m.stride) if conv else (),  # type: ignore[arg-type]
            padding=tuple(m.padding) if conv else (),  # type: ignore[arg-type]
            dilation=tuple(m.dilation) if conv else (),  # type: ignore[arg-type]
            groups=int(m.groups) if conv else 1))  # type: ignore[arg-type]
    return out


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

    False for residual networks, which the caps cannot be mapped onto (see
    :func:`residual_reason`; the pipeline warns).
    """
    if residual_reason(graph) is not None:
        return False
    caps = profile_caps(geometries(graph, alive), profile)
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
    masks, binding = {}, {}
    for g in geoms:
        la = graph.layer(g.name)
        s = {g.name: (la.weight.detach().cpu().abs().double() * alive[g.name]).numpy()}
        alloc = allocate_capped(s, [g], profile, keep[g.name])
        masks.update(to_torch(alloc))
        binding[g.name] = _binding(alloc.binding[g.name], method)
    return masks, binding


def _binding(level: str, method: str) -> str:
    if level in ("global", "none"):
        return f"{method}.threshold" if method in SCORE_METHODS else f"{method}.density"
    return f"cap.{level}"


def fit_keep(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
             alive: Mapping[str, torch.Tensor], profile: HardwareProfile,
             chips: int | None, cores: int | None) -> tuple[int, CappedAllocation, FitReport]:
    """The most weights (smallest sparsity) with which the model fits the target."""
    if method not in SCORE_METHODS:
        raise UsageError(f"--fit --method {method}: the fit search needs a score-based method "
                         f"({', '.join(SCORE_METHODS)}); pass --sparsity instead")
    reason = residual_reason(graph)
    if reason is not None:
        raise UsageError(f"--fit: {reason}; pass --sparsity instead")
    return find_fit_keep(score_arrays(graph, method, lambdas, alive), geometries(graph, alive),
                         profile, chips, cores)


def fit_section(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], profile: HardwareProfile,
                chips: int | None, cores: int | None) -> tuple[FitReport, dict[str, Any]]:
    """Check the final masks against the chip and format the result for the report.

    Raises:
        ModelError: the graph has residual joins (:func:`residual_reason`).
    """
    reason = residual_reason(graph)
    if reason is not None:
        raise ModelError(f"fit check on {profile.name}: {reason}")
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
