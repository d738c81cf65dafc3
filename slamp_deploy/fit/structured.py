"""The structure step of ``--fit --structure neurons``: the smallest removal of whole neurons and
channels after which unstructured pruning can make the model fit.

Some rules count neurons or shapes, which no synapse mask changes: Xylo's hidden-neuron limit,
Speck's kernel and neuron memories (set by channels and map sizes), a Loihi core count whose
neuron floor alone exceeds the chip. :func:`fit_structure` bisects over the number of channels
removed (the plans of :func:`slamp_deploy.prune.structure.plan_structure` are nested, so the
fit flips once) for the smallest count at which the compact model passes every rule pruning
cannot relieve and fits at the lowest keep count the synapse search tries
(:func:`slamp_deploy.fit.search.blocking_violations`); the synapse search then runs on that
compact model. Structure first, to fit the counts; synapses second, to fit the budgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import FitReport, RuleResult, Violation
from slamp_deploy.errors import InfeasibleTargetError, ModelError, SlampError
from slamp_deploy.fit.search import blocking_violations
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.prune.compact import compact_graph
from slamp_deploy.prune.masks import alive_masks
from slamp_deploy.prune.structure import StructurePlan, channel_groups, plan_structure

__all__ = ["Relieved", "StructureFit", "check_structure_target", "fit_structure",
           "relieved_rules", "structure_would_fit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Relieved:
    """A rule that blocked the full-size model and what the structure step made of it."""

    rule: str
    layer: str | None
    before: int
    after: int | None  # None: the rule is no longer evaluated on the compact model's layers
    limit: int

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "layer": self.layer, "before": self.before,
                "after": self.after, "limit": self.limit}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StructureFit:
    """What the structure search chose."""

    plan: StructurePlan
    graph: SpikingGraph  # the compact model, traced
    fraction: float  # channels removed / channels of the prunable groups
    blockers: tuple[Violation, ...]  # what stopped the full-size model
    attempts: int  # compact models checked


def _blockers(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
              profile: HardwareProfile, chips: int | None, cores: int | None
              ) -> list[Violation]:
    return blocking_violations(graph, alive_masks(graph), method, lambdas, profile, chips, cores)


def fit_structure(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
                  profile: HardwareProfile, chips: int | None = None, cores: int | None = None,
                  *, at_least: float = 0.0) -> StructureFit | None:
    """The smallest structured removal (at least ``at_least`` of the prunable channels) with
    which the model fits ``profile`` after unstructured pruning; None when the full-size model
    needs none (and ``at_least`` is 0).

    Raises:
        InfeasibleTargetError: even one neuron or channel per layer does not fit (the message
            gives the rule, its numbers and the neurons kept).
        ModelError: the graph's joins cannot be mapped on the target.
    """
    first = _blockers(graph, method, lambdas, profile, chips, cores)
    groups = channel_groups(graph)
    total = sum(g.channels for g in groups if g.fixed is None)
    lo = round(at_least * total)
    if not first and lo == 0:
        return None
    if total == 0:
        raise InfeasibleTargetError(f"{first[0].message}: no layer can lose neurons or channels "
                                    f"(every one drives the outputs or a fixed join); "
                                    f"{first[0].remedy}")

    def plan_at(k: int) -> StructurePlan:
        return plan_structure(graph, method, k / total, lambdas=lambdas, groups=groups)

    attempts = 0

    def check(k: int) -> tuple[StructurePlan, SpikingGraph, list[Violation]]:
        nonlocal attempts
        attempts += 1
        plan = plan_at(k)
        g = compact_graph(graph, plan)
        return plan, g, _blockers(g, method, lambdas, profile, chips, cores)

    best = check(total)
    if best[2]:
        _refuse(best[2][0], best[0], groups, graph)
    hi = total  # fits; lo does not (the full-size model, or the floor asked for: checked)
    if lo > 0:
        at_lo = check(lo)
        if not at_lo[2]:
            best, hi = at_lo, lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = check(mid)
        if got[2]:
            lo = mid
        else:
            best, hi = got, mid
    plan, g, _ = best
    return StructureFit(plan=plan, graph=g, fraction=plan.removed / total,
                        blockers=tuple(first), attempts=attempts)


def _refuse(v: Violation, plan: StructurePlan, groups: Sequence, graph: SpikingGraph) -> None:
    free = [g for g in groups if g.fixed is None]
    kept = sum(len(plan.keep[g.name]) for g in free)
    total = sum(g.channels for g in free)
    fixed = [g for g in groups if g.fixed is not None]
    what = "; ".join(f"{', '.join(g.layers)} {g.fixed} ({g.channels})" for g in fixed)
    raise InfeasibleTargetError(
        f"{v.message} even with one neuron or channel per layer ({kept:,} of {total:,} kept in "
        f"{len(free)} layer group(s){'; fixed: ' + what if what else ''}); {v.remedy}")


def structure_would_fit(graph: SpikingGraph, method: str, lambdas: Mapping[str, float],
                        profile: HardwareProfile, chips: int | None = None,
                        cores: int | None = None) -> bool:
    """Whether one neuron or channel per prunable group would let the synapse search fit (what
    a ``--fit`` without ``--structure`` tells the user when it has no answer)."""
    groups = channel_groups(graph)
    if not any(g.fixed is None for g in groups):
        return False
    try:
        plan = plan_structure(graph, "lamp", 1.0, groups=groups)  # counts: any method's
        return not _blockers(compact_graph(graph, plan), method, lambdas, profile, chips, cores)
    except SlampError:
        return False


def relieved_rules(blockers: Sequence[Violation], report: FitReport) -> tuple[Relieved, ...]:
    """The blocking rules of the full-size model with their values on ``report`` (the compact
    model's final check)."""
    results: dict[tuple[str, str | None], RuleResult] = {}
    for lf in report.layers:
        for c in lf.checks:
            results.setdefault((c.rule, c.layer), c)
    for c in report.network_checks:
        results.setdefault((c.rule, c.layer), c)
    out = []
    for v in blockers:
        r = results.get((v.rule, v.layer))
        out.append(Relieved(rule=v.rule, layer=v.layer, before=v.value,
                            after=None if r is None else r.value, limit=v.limit))
    return tuple(out)


def check_structure_target(graph: SpikingGraph) -> None:
    """Refuse, naming the layers and why, a model none of whose layers can lose outputs.

    Raises:
        ModelError: every group is fixed (the readout, a join with the input, ...).
    """
    groups = channel_groups(graph)
    if not any(g.fixed is None for g in groups):
        why = "; ".join(f"layer {n!r} {g.fixed}" for g in groups for n in g.layers)
        raise ModelError(f"--structure: no layer can lose neurons or channels ({why}); drop "
                         f"--structure")
