"""Will a (pruned or dense) network fit a chip? Named rules, exact counts, margins.

The pipeline describes each synaptic layer with a :class:`~slamp_deploy.geometry.LayerGeometry`
(shapes, conv geometry and the boolean keep-mask); :func:`check_fit` validates the layers, merges
the layers joined into one neuron population, hands them to the profile's chip family
(``family_of(profile).check``), and turns what its rules found into a
:class:`~slamp_deploy.chips.verdict.FitReport`. Rules whose figure is unknown (or only ``U``) are
reported as ``not_checked`` with the reason, never silently passed. The counting conventions are
those of :mod:`slamp_deploy.geometry`; each family module documents its own mapping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from slamp_deploy.chips.family import Family, FitContext, chip_cores, families, family_of
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import FitReport, LayerFit, RuleResult, Violation
from slamp_deploy.errors import ModelError
from slamp_deploy.geometry import (
    IDENTITY,
    INPUT,
    LayerGeometry,
    LayerStats,
    layer_stats,
    population_members,
)

__all__ = ["check_fit"]

_SCOPE = {"neuron": "per-neuron limit", "core": "per-core limit", "chip": "per-chip limit"}


def check_fit(
    layers: Sequence[LayerGeometry],
    profile: HardwareProfile,
    *,
    chips: int | None = None,
    cores: int | None = None,
) -> FitReport:
    """Map ``layers`` onto ``profile`` and check every rule the profile can quantify.

    Args:
        layers: the synaptic layers in network order.
        profile: a loaded :class:`HardwareProfile`.
        chips: chips available (default 1).
        cores: total cores available; overrides ``chips * cores per chip``.

    Returns:
        A :class:`FitReport`; ``report.fits`` is the verdict.

    Raises:
        ModelError: a layer's shapes and mask disagree, or names are duplicated.
    """
    _check_arguments(layers, chips, cores)
    stats = [layer_stats(lay) for lay in layers]
    sources = _sources(layers)
    family = family_of(profile)
    primary, merged = _populations(layers, stats)
    _refuse_joins(layers, primary, profile, family)
    # the mapped units: one per neuron population, its layers' connectivity merged
    keep = [i for i, lay in enumerate(layers) if primary[lay.name] == lay.name]
    ctx = FitContext(
        profile=profile,
        layers=[layers[i] for i in keep],
        stats=[merged.get(layers[i].name, stats[i]) for i in keep],
        sources=[sources[i] for i in keep],
        all_layers=layers,
        all_sources=sources,
        fan_out_by_source=_fan_out_by_source(sources, stats),
    )
    family.check(ctx)
    count = chip_cores(ctx, family, chips, cores)
    layer_fits = [
        _layer_fit(ctx, lay, st, src, primary[lay.name], merged.get(lay.name, st))
        for lay, st, src in zip(layers, stats, sources, strict=True)
    ]
    all_checks = [c for lf in layer_fits for c in lf.checks] + ctx.net
    violations = tuple(
        _violation(c, profile.name, family) for c in all_checks if c.status == "violated"
    )
    return FitReport(
        target=profile.name,
        mapper=profile.mapper,
        fits=not violations,
        layers=tuple(layer_fits),
        network_checks=tuple(ctx.net),
        cores_used=count.used,
        cores_available=count.available,
        chips_used=count.chips_used,
        chips_available=count.chips_available,
        violations=violations,
        not_checked=tuple(c for c in all_checks if c.status == "not_checked"),
        profile_sha256=profile.sha256,
    )


def _check_arguments(layers: Sequence[LayerGeometry], chips: int | None, cores: int | None
                     ) -> None:
    if chips is not None and chips < 1:
        raise ModelError(f"chips = {chips}: must be a positive integer")
    if cores is not None and cores < 1:
        raise ModelError(f"cores = {cores}: must be a positive integer")
    names = [lay.name for lay in layers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ModelError(f"layer names must be unique; repeated: {', '.join(dup)}")


def _sources(layers: Sequence[LayerGeometry]) -> list[str]:
    """Each layer's source layer name (``"@input"`` for the network input)."""
    names = [lay.name for lay in layers]
    sources: list[str] = []
    for i, lay in enumerate(layers):
        src = lay.source if lay.source is not None else (names[i - 1] if i else INPUT)
        if src != INPUT and src not in names:
            raise ModelError(f"layer {lay.name!r}: source = {src!r} is not a layer name")
        sources.append(src)
    return sources


def _fan_out_by_source(sources: Sequence[str], stats: Sequence[LayerStats]
                       ) -> dict[str, np.ndarray]:
    """Fan-out of each source's units over all its consumers."""
    out: dict[str, np.ndarray] = {}
    for src, st in zip(sources, stats, strict=True):
        prev = out.get(src)
        if prev is None:
            out[src] = st.fan_out.copy()
        elif prev.shape == st.fan_out.shape:
            out[src] = prev + st.fan_out
        else:  # consumers read the source through different reshapes: bound by the sum of maxima
            out[src] = np.full(1, prev.max(initial=0) + st.fan_out.max(initial=0))
    return out


def _refuse_joins(layers: Sequence[LayerGeometry], primary: dict[str, str],
                  profile: HardwareProfile, family: Family) -> None:
    joined = [lay for lay in layers if primary[lay.name] != lay.name or lay.kind == IDENTITY]
    if not joined or family.maps_joins:
        return
    lay = joined[0]
    joiners = ", ".join(f.name for f in families() if f.maps_joins)
    raise ModelError(f"fit check on {profile.name}: layer {lay.name!r} joins neuron "
                     f"population {lay.population!r} with layer {primary[lay.name]!r} "
                     f"(a residual join), which the {profile.mapper} mapper does not model; the "
                     f"{joiners} mappers do")


def _layer_fit(ctx: FitContext, lay: LayerGeometry, st: LayerStats, src: str, primary: str,
               whole: LayerStats) -> LayerFit:
    checks = tuple(ctx.checks.get(lay.name, []))
    binding, bmargin = _binding(checks)
    joins = primary != lay.name
    if joins:  # its neurons, fan-in and cores are the population's, on its first layer
        binding, bmargin = f"mapped with {primary}", None
    return LayerFit(
        name=lay.name,
        kind=lay.kind,
        neurons=0 if joins else st.n_out,
        kept_weights=st.kept_weights,
        kept_synapses=st.synapses,
        max_fan_in=int(whole.fan_in.max(initial=0)),
        max_fan_out=int(ctx.fan_out_by_source[src].max(initial=0)),
        cores=ctx.cores.get(lay.name),
        cores_by_rule=tuple(ctx.cores_by_rule.get(lay.name, [])),
        binding_rule=binding,
        binding_margin=bmargin,
        checks=checks,
    )


def _populations(layers: Sequence[LayerGeometry], stats: Sequence[LayerStats]
                 ) -> tuple[dict[str, str], dict[str, LayerStats]]:
    """Layers that drive one neuron population (``population``), merged onto the first of them.

    Returns each layer's primary (the first layer of its population, or itself) and, for each
    primary of several layers, the merged counts: the same neurons, the fan-ins added up, the
    inputs of all of them side by side.
    """
    members = population_members(layers)
    primary = {lay.name: lay.name for lay in layers}
    for group in members.values():
        for i in group:
            primary[layers[i].name] = layers[group[0]].name
    merged: dict[str, LayerStats] = {}
    for pop, group in members.items():
        if len(group) < 2:
            continue
        parts = [stats[i] for i in group]
        n = parts[0].n_out
        for i, st in zip(group, parts, strict=True):
            if st.n_out != n:
                raise ModelError(f"layer {layers[i].name!r}: drives {st.n_out} units of neuron "
                                 f"population {pop!r}, but layer {layers[group[0]].name!r} "
                                 f"drives {n}; joined layers must drive the same units")
        merged[layers[group[0]].name] = LayerStats(
            n_out=n,
            n_in=sum(st.n_in for st in parts),
            kept_weights=sum(st.kept_weights for st in parts),
            fan_in=np.sum([st.fan_in for st in parts], axis=0),
            fan_out=np.concatenate([st.fan_out for st in parts]),
            incidence=_StackedIncidence(parts),
            column_blocks=_stacked_blocks(parts),
        )
    return primary, merged


def _stacked_blocks(parts: Sequence[LayerStats]) -> Any:
    """The joined layers' column blocks, one list (a group's inputs are the parts' inputs
    together, so its sums add over the blocks that hold it); None when a part has none."""
    if any(st.column_blocks is None for st in parts):
        return None

    def blocks(starts: np.ndarray, stop: int | None = None) -> Iterator[Any]:
        for st in parts:
            yield from st.column_blocks(starts, stop)  # type: ignore[misc]
    return blocks


class _StackedIncidence:
    """The incidence of joined layers: their inputs side by side, the same core groups."""

    def __init__(self, parts: Sequence[LayerStats]):
        self.parts = tuple(parts)

    def __call__(self, starts: np.ndarray, stop: int | None = None) -> np.ndarray:
        return np.vstack([st.incidence(starts, stop) for st in self.parts])


def _binding(checks: Sequence[RuleResult]) -> tuple[str | None, int | None]:
    best: tuple[float, str, int] | None = None
    for c in checks:
        m = c.margin
        if m is None or c.limit is None or c.status not in ("ok", "violated"):
            continue
        rel = m / max(c.limit, 1)
        if best is None or rel < best[0]:
            best = (rel, c.rule, m)
    return (best[1], best[2]) if best else (None, None)


def _violation(c: RuleResult, target: str, family: Family) -> Violation:
    op = ">" if c.comparison == "<=" else "<"
    where = f"layer {c.layer}" if c.layer is not None else "network"
    assert c.value is not None and c.limit is not None  # violated results always carry both
    if c.comparison == "==":
        msg = f"{where}: {c.rule} violated: {c.reason} ({target})"
    else:
        scope = _SCOPE.get(c.rule.partition(".")[0], c.rule)
        msg = f"{where}: {family.words(c.rule)} {c.value:,} {op} {c.limit:,} ({target} {scope})"
    return Violation(
        rule=c.rule,
        layer=c.layer,
        value=c.value,
        limit=c.limit,
        relievable=c.relievable,
        remedy=c.reason,
        message=msg,
    )
