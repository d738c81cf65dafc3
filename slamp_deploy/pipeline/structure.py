"""The structure stage of a run (``--structure``): choose the neurons and channels to remove (the
fraction given, or with ``--fit`` the smallest removal that fits the target), build the compact
model, and describe it for the report and the output folder (``structure.json`` and the
factory ``compact_model.py`` that rebuilds the compact model, so ``--model
compact_model.py:build --weights pruned.pt`` loads the run's result).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import Violation
from slamp_deploy.config import PipelineConfig
from slamp_deploy.errors import SlampWarning
from slamp_deploy.fit.search import apply_fit_remedies
from slamp_deploy.fit.structured import check_structure_target, fit_structure
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.prune.compact import compact_graph, count_neurons, shrink_table
from slamp_deploy.prune.masks import alive_masks
from slamp_deploy.prune.structure import StructurePlan, parse_structure, plan_structure
from slamp_deploy.report.model import StructureRow, StructureSection

__all__ = ["FACTORY_FILE", "STRUCTURE_FILE", "StructureOutcome", "structure_stage"]

STRUCTURE_FILE = "structure.json"
FACTORY_FILE = "compact_model.py"

_FACTORY = '''"""The compact model of a slamp-deploy run (--structure): the original model
with the removed neurons and channels gone, as structure.json beside this file records them.
Its weights are the run's pruned.pt: --model compact_model.py:build --weights pruned.pt"""

from pathlib import Path

from slamp_deploy.prune.compact import load_compact


def build():
    return load_compact(Path(__file__).with_name("structure.json"))
'''


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StructureOutcome:
    """The compact model and what the report and the output folder say about it."""

    graph: SpikingGraph  # the compact model's graph
    plan: StructurePlan
    section: StructureSection
    blockers: tuple[Violation, ...]  # the fit rules that stopped the full-size model
    files: dict[str, bytes]


def structure_stage(cfg: PipelineConfig, graph: SpikingGraph, lambdas: dict[str, float],
                    profile: HardwareProfile | None, spec: str) -> StructureOutcome:
    """Plan the removal, compact the model (``graph``'s model is left as it is).

    Raises:
        InfeasibleTargetError: with ``--fit``, one neuron per layer still does not fit.
        ModelError: no layer can lose outputs (each named, with why).
        UsageError: a bad ``--structure`` value or method.
    """
    at_least = parse_structure(cfg.structure, cfg.fit)
    assert at_least is not None
    check_structure_target(graph)
    found = None
    if cfg.fit and profile is not None:
        fixed = apply_fit_remedies(graph, alive_masks(graph), profile)
        if fixed:
            warnings.warn(f"--fit on {profile.name}: {'; '.join(fixed)} (retrained with the "
                          "masks when --epochs > 0)", SlampWarning, stacklevel=2)
        found = fit_structure(graph, cfg.method, lambdas, profile, cfg.chips, cfg.cores,
                              at_least=at_least)
    plan = found.plan if found is not None else plan_structure(graph, cfg.method, at_least,
                                                               lambdas=lambdas)
    compact = found.graph if found is not None else compact_graph(graph, plan)
    section = _section(graph, compact, plan, searched=found is not None,
                       attempts=found.attempts if found is not None else 0)
    files = {STRUCTURE_FILE: _structure_json(graph, compact, plan, spec).encode(),
             FACTORY_FILE: _FACTORY.encode()}
    return StructureOutcome(graph=compact, plan=plan, section=section,
                            blockers=found.blockers if found is not None else (), files=files)


def _section(graph: SpikingGraph, compact: SpikingGraph, plan: StructurePlan, *,
             searched: bool, attempts: int) -> StructureSection:
    group_of = {la: g for g in plan.groups for la in g.layers}
    rows = tuple(StructureRow(name=r.name, kind=r.kind, group=group_of[r.name].name,
                              fixed=group_of[r.name].fixed, outputs_before=r.outputs_before,
                              outputs_after=r.outputs_after, inputs_before=r.inputs_before,
                              inputs_after=r.inputs_after)
                 for r in shrink_table(graph, plan))
    prunable = sum(g.channels for g in plan.groups if g.fixed is None)
    return StructureSection(
        method=plan.method, fraction_removed=round(plan.removed / max(prunable, 1), 6),
        channels_removed=plan.removed, channels_prunable=prunable,
        neurons_before=count_neurons(graph), neurons_after=count_neurons(compact),
        weights_before=graph.n_weights, weights_after=compact.n_weights, searched=searched,
        attempts=attempts, layers=rows)


def _structure_json(graph: SpikingGraph, compact: SpikingGraph, plan: StructurePlan,
                    spec: str) -> str:
    """What :func:`slamp_deploy.prune.compact.load_compact` rebuilds the compact model from."""
    where, sep, attr = spec.rpartition(":")
    if sep and where.endswith(".py") and Path(where).is_file():
        spec = f"{Path(where).resolve()}:{attr}"  # the factory file, wherever the run was
    no_bias = [la.name for la in compact.layers if getattr(la.module, "bias", None) is None]
    return json.dumps({
        "model": spec, "input_shape": list(graph.input_shape), "method": plan.method,
        "keep": {g.name: list(plan.keep[g.name]) for g in plan.groups
                 if len(plan.keep[g.name]) != g.channels},
        "no_bias": no_bias,
    }, indent=2, sort_keys=True) + "\n"
