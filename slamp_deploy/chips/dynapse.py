"""The DYNAP-SE2 family (``[dynapse]``): the tag budget of rockpool's allocator, the fan-in, and
the network's neurons spread over the cores and chips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from slamp_deploy.chips.family import (
    Family,
    FitContext,
    Rule,
    fan_in,
    layer_kinds,
    limit,
    not_checked,
    register_family,
    section_of,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.geometry import INPUT

__all__ = ["Dynapse", "DynapseRules"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DynapseRules:
    """DYNAP-SE2 routing rules (rockpool dynapse allocator)."""

    tags_max: Figure = field(
        metadata={"unit": "tag", "kind": "count"}
    )  # n_in + 2 * n_neurons <= tags_max
    destinations_max: Figure = field(
        metadata={"unit": "chip", "kind": "count"}
    )  # SRAM destination entries per neuron



def _dynapse(ctx: FitContext) -> DynapseRules:
    rules: DynapseRules = section_of(ctx.profile, Dynapse)
    return rules


def tags(n_inputs: int, n_neurons: int) -> int:
    """Tags a network needs: rockpool's allocator (synsense/rockpool @ 42cee1c96422,
    devices/dynapse/hardware/config/allocator.py, the profile's ROCKPOOL source) raises the
    DRCError 'not enough tags' when ``n_in + 2 * n_neurons > NUM_TAGS``."""
    return n_inputs + 2 * n_neurons


def tags_max(ctx: FitContext) -> Iterable[RuleResult]:
    total = sum(st.n_out for st in ctx.stats)
    n_in = sum(st.n_in for st, s in zip(ctx.stats, ctx.sources, strict=True) if s == INPUT)
    yield limit(_dynapse(ctx).tags_max, "dynapse.tags_max", None, tags(n_in, total),
                relievable=False, remedy="tags depend on neuron counts (n_in + 2 * "
                "n_neurons); reduce the inputs or the layer widths")


def cores_and_destinations(ctx: FitContext) -> Iterable[RuleResult]:
    """The network's neurons on the fewest cores; their chips within the SRAM destinations."""
    dy = _dynapse(ctx)
    npc = ctx.profile.core.neurons_max.as_int()
    if npc is None:
        yield not_checked("core.neurons_max", None, "figure unknown")
        return
    ctx.network_cores = -(-sum(st.n_out for st in ctx.stats) // npc)
    cpc = ctx.profile.cores_per_chip
    dest = dy.destinations_max.as_int()
    if cpc and dest is not None and -(-ctx.network_cores // cpc) <= dest:
        yield RuleResult(rule="dynapse.destinations_max", layer=None, status="ok",
                         value=-(-ctx.network_cores // cpc), limit=dest,
                         confidence=dy.destinations_max.confidence)
    else:
        yield not_checked("dynapse.destinations_max", None,
                          "more chips than destinations: needs placement of neurons on chips")


@register_family
class Dynapse(Family):
    """SynSense / INI DYNAP-SE2: tag-routed neurons, placed network-wide."""

    name = "dynapse2"
    section = ("dynapse", DynapseRules)
    rule_words: ClassVar[Mapping[str, str]] = {"dynapse.tags_max": "tags"}
    rules: ClassVar[tuple[Rule, ...]] = (layer_kinds, fan_in, tags_max, cores_and_destinations)
