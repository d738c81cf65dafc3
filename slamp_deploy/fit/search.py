"""The chip side of a run: layer geometry, cap-aware allocation, the fit check, and export.

Sits between the pruning core (which knows nothing of chips or file formats) and the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from slamp_deploy.chips.hardware import HardwareProfile
from slamp_deploy.errors import ModelError, UsageError
from slamp_deploy.fit.capped import find_fit_keep, profile_caps
from slamp_deploy.fit.check import IDENTITY, FitReport, LayerGeometry, check_fit
from slamp_deploy.fit.check import INPUT as INPUT_SOURCE
from slamp_deploy.model.graph import ADD, INPUT, NEURON_KINDS, SYNAPTIC_KINDS, SpikingGraph
from slamp_deploy.prune.allocate import ChipCaps, score_arrays
from slamp_deploy.prune.methods import available_methods, get_method
from slamp_deploy.prune.plan import PruningPlan

#: ops a value passes one-to-one (element-wise or a reshape): an identity shortcut may cross them
_ONE_TO_ONE = ("batchnorm", "dropout", "reshape", "flatten")


def _origins(graph: SpikingGraph, j: int) -> list[tuple[int, bool]]:
    """The synaptic ops, neuron ops or the input (INPUT) whose values reach op ``j``'s output
    through adds and pass-through ops, each with whether the path is one-to-one."""
    out: list[tuple[int, bool]] = []
    todo = [(j, True)]
    while todo:
        k, one = todo.pop()
        while k != INPUT and graph.ops[k].kind not in (*SYNAPTIC_KINDS, *NEURON_KINDS, ADD):
            one = one and graph.ops[k].kind in _ONE_TO_ONE
            k = graph.sources(k)[0]
        if k != INPUT and graph.ops[k].kind == ADD:
            todo.extend((src, one) for src in graph.sources(k))
        else:
            out.append((k, one))
    return sorted(out)


def _dag_wiring(graph: SpikingGraph, out: list[LayerGeometry]) -> list[LayerGeometry]:
    """Sources, joined populations and identity shortcuts of a residual graph's layers."""
    first: dict[str, str] = {}  # neuron op -> the first layer that drives it
    drivers: dict[str, int] = {}  # neuron op -> layers and identity shortcuts that drive it
    for la in graph.layers:
        if la.neuron is not None:
            first.setdefault(la.neuron.name, la.name)
            drivers[la.neuron.name] = drivers.get(la.neuron.name, 0) + 1
    identities: list[LayerGeometry] = []

    def source_of(k: int, who: str) -> str:
        if k == INPUT:
            return INPUT_SOURCE
        name = graph.ops[k].name
        if name not in first:
            raise ModelError(f"fit check: {who} reads neurons '{name}', which no synaptic layer "
                             f"drives; the fit checker cannot place them")
        return first[name]

    for i, op in enumerate(graph.ops):
        if op.kind != ADD or any(graph.ops[c].kind == ADD for c in graph.consumers[i]):
            continue  # handle each join once, at its last add
        reach = graph.downstream(i, through_neurons=False)
        hit = next((j for j in reach if graph.ops[j].kind in (*SYNAPTIC_KINDS, *NEURON_KINDS)),
                   None)
        if hit is None or graph.ops[hit].kind not in NEURON_KINDS:
            raise ModelError(f"fit check: the residual join '{op.name}' adds spikes that feed "
                             f"{'the output' if hit is None else repr(graph.ops[hit].name)} "
                             f"directly; the fit checker maps joins of currents into a neuron "
                             f"population (the sum before the neurons, as in "
                             f"examples/cifar_resnet.py)")
        pop = graph.ops[hit]
        for k, one in _origins(graph, i):
            if k != INPUT and graph.ops[k].kind in SYNAPTIC_KINDS:
                continue  # a layer: joined through its population below
            who = f"the shortcut into '{pop.name}'"
            src_shape = graph.input_shape if k == INPUT else graph.ops[k].out_shape
            if not one or math.prod(src_shape) != math.prod(pop.out_shape):
                raise ModelError(f"fit check: {who} is not one-to-one (it pools or reshapes "
                                 f"{list(src_shape)} into {list(pop.out_shape)}); the fit "
                                 f"checker maps identity shortcuts only")
            n = math.prod(pop.out_shape)
            name = f"{pop.name}:identity"
            while any(g.name == name for g in identities):
                name += "'"
            identities.append(LayerGeometry(
                name=name, kind=IDENTITY, in_shape=tuple(pop.out_shape),
                out_shape=tuple(pop.out_shape), mask=np.ones(n, dtype=bool),
                neuron_shape=tuple(pop.out_shape), source=source_of(k, who),
                population=pop.name))
            drivers[pop.name] = drivers.get(pop.name, 0) + 1
    wired = []
    for la, g in zip(graph.layers, out, strict=True):
        origins = _origins(graph, graph.sources(la.op_index)[0])
        if len(origins) > 1:
            raise ModelError(f"fit check: layer '{la.name}' reads the sum of "
                             f"{len(origins)} neuron populations (a join after the neurons); "
                             f"the fit checker maps joins of currents before the neurons")
        src = source_of(origins[0][0], f"layer '{la.name}'")
        pop = la.neuron.name if la.neuron is not None and drivers[la.neuron.name] > 1 else None
        wired.append(replace(g, source=src, population=pop))
    return wired + identities


def geometries(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], *,
               wiring: bool = True) -> list[LayerGeometry]:
    """The neutral per-layer description the fit checker and the capped allocator read.

    A residual graph also gets (``wiring``) each layer's source, the neuron population of layers
    whose currents are joined, and one ``identity`` connection per identity shortcut.

    Raises:
        ModelError: a residual join the fit checker cannot map (named, with why).
    """
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
    return out if graph.is_chain or not wiring else _dag_wiring(graph, out)


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


def chip_caps(graph: SpikingGraph, alive: Mapping[str, torch.Tensor],
              profile: HardwareProfile) -> ChipCaps:
    """The profile's caps on this graph, for :func:`slamp_deploy.prune.allocate.allocate`."""
    geoms = geometries(graph, alive)
    return ChipCaps(layers=tuple(geoms), caps=profile_caps(geoms, profile))


def fit_keep(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
             alive: Mapping[str, torch.Tensor], profile: HardwareProfile,
             chips: int | None, cores: int | None) -> tuple[int, PruningPlan, FitReport]:
    """The most weights (smallest sparsity) with which the model fits the target."""
    if get_method(method).kind != "score":
        raise UsageError(f"--fit --method {method}: the fit search needs a score-based method "
                         f"({', '.join(available_methods('score'))}); pass --sparsity instead")
    weights = {la.name: la.weight for la in graph.layers}
    return find_fit_keep(score_arrays(method, weights, alive, lambdas), geometries(graph, alive),
                         profile, chips, cores)


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
