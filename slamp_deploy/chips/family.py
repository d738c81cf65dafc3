"""The chip-family seam: the :class:`Family` protocol, the registry of families keyed by a
profile's ``mapper``, the :class:`FitContext` that rules read and write, the rule helpers, and the
rules every family shares (layer kinds, fan-in, fan-out, chip cores).

A family is one module in ``slamp_deploy.chips`` (``loihi.py``, ``speck.py``, ...) holding
everything code knows about it: its profile section and cross-checks, its rules as small named
functions, its caps for the allocator, whether it maps residual joins and which simulators run
its exports. Numbers stay in ``hardware_profiles/*.toml``; a chip fact that is a rule rather than
a number sits in its family module with the vendor source that states it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.errors import ProfileError
from slamp_deploy.geometry import (
    IDENTITY,
    LayerCaps,
    LayerGeometry,
    LayerStats,
    core_starts,
)

__all__ = [
    "REMEDY",
    "RULE_WORDS",
    "Family",
    "FitContext",
    "Rule",
    "chip_cores",
    "conv2d_layers",
    "count_caps",
    "families",
    "family_named",
    "family_of",
    "fan_in",
    "fan_out",
    "layer_kinds",
    "limit",
    "mapper_names",
    "not_checked",
    "profile_caps",
    "register_family",
    "section_of",
    "yes_no",
]

#: Words for the rules every family may report (a family adds its own in ``rule_words``).
RULE_WORDS: Mapping[str, str] = {
    "neuron.fan_in_max": "fan-in",
    "neuron.fan_out_max": "fan-out",
    "chip.cores": "cores",
}
#: Remedies of the shared per-neuron rules.
REMEDY: Mapping[str, str] = {
    "neuron.fan_in_max": "prune to at most {limit} inputs per neuron (find_fit_keep / --fit)",
    "neuron.fan_out_max": "prune to at most {limit} targets per neuron (find_fit_keep / --fit)",
}


@dataclass
class FitContext:
    """What the rules of one fit check read, and the results they add (the one mutable value of
    a check: it lives for one :func:`slamp_deploy.fit.check.check_fit` call)."""

    profile: HardwareProfile
    layers: Sequence[LayerGeometry]  # mapped units: one per neuron population, joins merged
    stats: Sequence[LayerStats]
    sources: Sequence[str]  # resolved source name per mapped layer ("@input": network input)
    all_layers: Sequence[LayerGeometry]  # every layer, joined ones included
    all_sources: Sequence[str]
    fan_out_by_source: Mapping[str, np.ndarray]
    checks: dict[str, list[RuleResult]] = field(default_factory=dict)
    net: list[RuleResult] = field(default_factory=list)
    cores: dict[str, int | None] = field(default_factory=dict)  # per mapped layer
    cores_by_rule: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    # cores of the whole network, for families that place neurons network-wide (Xylo, DYNAP-SE2)
    network_cores: int | None = None

    def add(self, r: RuleResult) -> None:
        if r.layer is None:
            self.net.append(r)
        else:
            self.checks.setdefault(r.layer, []).append(r)

    def add_all(self, results: Iterable[RuleResult]) -> None:
        for r in results:
            self.add(r)


#: A rule: reads the context, yields its results (it may also record cores on the context).
Rule = Callable[[FitContext], Iterable[RuleResult]]


class Family:
    """One chip family: its profile section, its rules, its caps, its simulators.

    Subclass it, set the class variables, and decorate the class with :func:`register_family`.
    """

    name: ClassVar[str]  # the profile's ``mapper`` value
    # (section name, dataclass of Figures): required iff the profile's mapper is this family
    section: ClassVar[tuple[str, type] | None] = None
    maps_joins: ClassVar[bool] = False  # residual joins are mapped onto one population
    models_cores: ClassVar[bool] = True  # False: words chip.cores' not-checked reason
    simulators: ClassVar[tuple[str, ...]] = ()  # exporters that can run its networks
    rule_words: ClassVar[Mapping[str, str]] = {}  # rule id -> words in violation messages
    rules: ClassVar[tuple[Rule, ...]] = ()
    # (rule id, why and what to do) for families whose chips map no recurrent layer at all
    feed_forward: ClassVar[tuple[str, str] | None] = None
    # fields of the family section its rules cannot run without (refused at load when unknown)
    needs: ClassVar[tuple[str, ...]] = ()

    def cross_check(self, profile: HardwareProfile, fname: str) -> None:
        """Profile rules spanning several fields; raise ProfileError. Default: none."""

    def caps(self, layers: Sequence[LayerGeometry], profile: HardwareProfile
             ) -> dict[str, LayerCaps]:
        """The count caps the allocator must honour on each layer. Default: the fan-in."""
        return count_caps(layers, profile, core_budget=False)

    def check(self, ctx: FitContext) -> None:
        """Run the family's rules on ``ctx``."""
        for rule in self.rules:
            ctx.add_all(rule(ctx))

    def words(self, rule: str) -> str:
        """The words for ``rule`` in a violation message (the rule id when it has none)."""
        return self.rule_words.get(rule, RULE_WORDS.get(rule, rule))


# --------------------------------------------------------------------------------------------
# The registry

_REGISTRY: dict[str, Family] = {}
#: The shipped families, imported on first use; their order is the order the loader checks the
#: family sections in (so its first error stays the same).
_BUILTIN = ("loihi", "truenorth", "spinnaker", "speck", "xylo", "dynapse", "akida")
_loaded = False


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register ``cls`` under its ``name`` (the profile's ``mapper`` value)."""
    other = _REGISTRY.get(cls.name)
    if other is not None and type(other) is not cls:
        raise ProfileError(f"chip family {cls.name!r} is registered twice ({type(other).__name__} "
                           f"and {cls.__name__}); give the new family its own mapper name")
    _REGISTRY[cls.name] = cls()
    return cls


def families() -> list[Family]:
    """Every registered family, the shipped ones first."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN:
            importlib.import_module(f"slamp_deploy.chips.{module}")
        _loaded = True
    return list(_REGISTRY.values())


def mapper_names() -> tuple[str, ...]:
    """The ``mapper`` values a profile may name, sorted."""
    return tuple(sorted(f.name for f in families()))


def family_named(mapper: str) -> Family | None:
    """The family registered as ``mapper``, or ``None``."""
    return next((f for f in families() if f.name == mapper), None)


def family_of(profile: HardwareProfile) -> Family:
    """The family of a loaded profile (its mapper was validated on load)."""
    fam = family_named(profile.mapper)
    if fam is None:
        raise ProfileError(f"{profile.name}: mapper = {profile.mapper!r}: no chip family is "
                           f"registered under that name; one of {', '.join(mapper_names())}")
    return fam


def profile_caps(layers: Sequence[LayerGeometry], profile: HardwareProfile
                 ) -> dict[str, LayerCaps]:
    """The count caps ``profile`` imposes on each layer (see ``slamp_deploy.prune.allocate``)."""
    return family_of(profile).caps(layers, profile)


# --------------------------------------------------------------------------------------------
# Rule helpers


def limit(
    fig: Figure,
    rule: str,
    layer: str | None,
    value: int,
    *,
    relievable: bool,
    remedy: str,
    comparison: str = "<=",
    cores_needed: int | None = None,
) -> RuleResult:
    """Compare ``value`` with a figure, or say why it cannot be checked."""
    if fig.unlimited:
        return RuleResult(rule=rule, layer=layer, status="no_limit", value=value,
                          confidence=fig.confidence, reason=fig.source)
    bound = fig.as_int()
    if bound is None:
        why = "figure unverified (U), not enforced" if fig.known else "figure unknown"
        return RuleResult(rule=rule, layer=layer, status="not_checked", value=value,
                          confidence=fig.confidence, reason=f"not checked ({why})")
    ok = value <= bound if comparison == "<=" else value >= bound
    return yes_no(rule, layer, ok, value=value, limit=bound, comparison=comparison,
                  cores_needed=cores_needed, relievable=relievable, confidence=fig.confidence,
                  reason="" if ok else remedy.format(limit=bound))


def yes_no(
    rule: str,
    layer: str | None,
    ok: bool,
    *,
    value: int,
    limit: int,
    confidence: str,
    reason: str,
    comparison: str = "==",
    relievable: bool = False,
    cores_needed: int | None = None,
) -> RuleResult:
    """An ``ok`` or ``violated`` result; ``reason`` (the remedy) is kept only when violated."""
    return RuleResult(
        rule=rule,
        layer=layer,
        status="ok" if ok else "violated",
        value=value,
        limit=limit,
        comparison=comparison,
        cores_needed=cores_needed,
        relievable=relievable,
        confidence=confidence,
        reason="" if ok else reason,
    )


def not_checked(rule: str, layer: str | None, reason: str, conf: str = "unknown") -> RuleResult:
    return RuleResult(
        rule=rule,
        layer=layer,
        status="not_checked",
        confidence=conf,
        reason=f"not checked ({reason})",
    )


# --------------------------------------------------------------------------------------------
# Shared rules


def layer_kinds(ctx: FitContext) -> Iterable[RuleResult]:
    """Every layer's kind is one the chip's toolchain maps (``layers.supported``)."""
    fig = ctx.profile.layers.supported
    for lay in ctx.all_layers:
        if lay.kind == IDENTITY:  # one synapse per neuron: plain connectivity on every chip
            continue
        if not fig.usable:
            yield not_checked("layers.supported", lay.name, "supported layer kinds unknown")
            continue
        assert isinstance(fig.value, tuple)
        yield yes_no("layers.supported", lay.name, lay.kind in fig.value, value=int(
            lay.kind in fig.value), limit=1, confidence=fig.confidence,
            reason=f"{lay.kind} is not supported (supported: "
            f"{', '.join(map(str, fig.value))}); replace the layer")


def fan_in(ctx: FitContext) -> Iterable[RuleResult]:
    """No neuron (of a population, joins summed) has more inputs than ``neuron.fan_in_max``."""
    fig = ctx.profile.neuron.fan_in_max
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        yield limit(fig, "neuron.fan_in_max", lay.name, int(st.fan_in.max(initial=0)),
                    relievable=True, remedy=REMEDY["neuron.fan_in_max"])


def fan_out(ctx: FitContext) -> Iterable[RuleResult]:
    """No neuron has more targets than ``neuron.fan_out_max``, over all consumers of a source."""
    fig = ctx.profile.neuron.fan_out_max
    for lay, src in zip(ctx.all_layers, ctx.all_sources, strict=True):
        value = int(ctx.fan_out_by_source[src].max(initial=0))
        yield limit(fig, "neuron.fan_out_max", lay.name, value, relievable=True,
                    remedy=REMEDY["neuron.fan_out_max"])


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreCount:
    """Cores and chips a mapping uses and has (``None``: not modelled or unknown)."""

    used: int | None
    available: int | None
    chips_used: int | None
    chips_available: int | None


def chip_cores(ctx: FitContext, family: Family, chips: int | None, cores: int | None
               ) -> CoreCount:
    """The cores the family's mapping recorded fit the chips (``chip.cores``), after its rules."""
    p = ctx.profile
    cpc = p.cores_per_chip
    n_chips = chips if chips is not None else 1
    per_layer = list(ctx.cores.values())
    if ctx.network_cores is None and (not per_layer or any(v is None for v in per_layer)):
        why = "core count unknown" if family.models_cores else \
            "this mapper does not model core allocation"
        ctx.add(not_checked("chip.cores", None, why))
        return CoreCount(used=None, available=cores, chips_used=None, chips_available=n_chips)
    used = ctx.network_cores if ctx.network_cores is not None else \
        sum(v for v in per_layer if v is not None)
    avail = cores if cores is not None else cpc * n_chips if cpc is not None else None
    chips_used = -(-used // cpc) if cpc else None
    if avail is None:
        ctx.add(not_checked("chip.cores", None, "cores per chip unknown"))
        return CoreCount(used=used, available=None, chips_used=chips_used,
                         chips_available=n_chips)
    # Pruning relieves a core shortage only if the neuron-count minimum alone fits; network-wide
    # placements have no per-layer minimum, so their whole count is the floor.
    floor = used if ctx.network_cores is not None else _neuron_floor(ctx)
    ctx.add(yes_no(
        "chip.cores", None, used <= avail, value=used, limit=avail, comparison="<=",
        relievable=floor <= avail, confidence=p.chip.cores.confidence,
        reason="prune further (find_fit_keep / --fit) or allow more cores/chips (--chips, --cores)"
        if floor <= avail
        else f"the neuron counts alone need {floor} cores; use more chips (--chips) "
        "or a smaller network"))
    return CoreCount(used=used, available=avail, chips_used=chips_used, chips_available=n_chips)


def _neuron_floor(ctx: FitContext) -> int:
    floor = 0
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        by_rule = dict(ctx.cores_by_rule.get(lay.name, []))
        floor += by_rule.get("core.neurons_max") or (1 if st.n_out else 0)
    return floor


# --------------------------------------------------------------------------------------------
# Count caps for the allocator


def count_caps(layers: Sequence[LayerGeometry], profile: HardwareProfile, *,
               core_budget: bool) -> dict[str, LayerCaps]:
    """The fan-in cap of each layer and, with ``core_budget``, the per-core synapse budget of
    the core mapping (``core.synapses_max`` over ``core.neurons_max`` rows), joins shared."""
    fan = profile.neuron.fan_in_max.as_int()
    npc = profile.core.neurons_max.as_int()
    budget = profile.core.synapses_max.as_int() if core_budget else None
    ident: dict[str, int] = {}  # population -> identity shortcuts into it
    size: dict[str, int] = {}  # population -> layers joined into it
    for lay in layers:
        if lay.population is not None:
            counts = ident if lay.kind == IDENTITY else size
            counts[lay.population] = counts.get(lay.population, 0) + 1
    out: dict[str, LayerCaps] = {}
    for lay in layers:
        if lay.kind == IDENTITY:
            continue
        taken = ident.get(lay.population, 0) if lay.population is not None else 0
        joined = lay.population is not None and bool(taken or size.get(lay.population, 0) > 1)
        f_in = None if fan is None else max(fan - taken, 0)
        caps = LayerCaps(fan_in_max=f_in)
        if npc is not None and budget is not None:
            caps = _core_caps(lay, f_in, taken, joined, npc, budget) or caps
        out[lay.name] = caps
    return out


def _core_caps(lay: LayerGeometry, f_in: int | None, taken: int, joined: bool, npc: int,
               budget: int) -> LayerCaps | None:
    n_rows = lay.mask.shape[0]
    if lay.kind == "linear":
        k = max(1, -(-n_rows // npc))
        row_max = lay.mask.shape[1] if f_in is None else min(f_in, lay.mask.shape[1])
        g_budget = max(budget - taken * -(-n_rows // k), 0)
        # otherwise the cap cannot bind (a joined group may gather several layers' rows)
        if joined or g_budget < -(-n_rows // k) * row_max:
            starts = tuple(int(s) for s in core_starts(n_rows, k))
            return LayerCaps(fan_in_max=f_in, group_starts=starts, group_max=g_budget)
        return None
    row_cap = max(budget // npc - taken, 0)
    if joined or row_cap < int(np.prod(lay.mask.shape[1:])):
        return LayerCaps(fan_in_max=row_cap if f_in is None else min(f_in, row_cap))
    return None


def conv2d_layers(ctx: FitContext) -> list[LayerGeometry]:
    """The mapped 2-D convolutions, for the families whose rules concern only them."""
    return [lay for lay in ctx.layers if lay.kind == "conv2d"]


def section_of(profile: HardwareProfile, family: type[Family]) -> Any:
    """The family's own section of ``profile`` (validated present on load)."""
    assert family.section is not None
    sec = profile.section(family.section[0])
    assert sec is not None, f"{profile.name}: no [{family.section[0]}] section"
    return sec
