"""The per-core mapper shared by the core-grid families (Loihi-class, TrueNorth, SpiNNaker):
each layer on its own cores, the fewest cores that satisfy every per-core rule, and the per-core
synapse budget as a cap for the allocator.

Core mapping: each layer (each neuron population, its joined layers merged) gets its own cores;
its units are split into ``k`` contiguous, equal groups (``starts = arange(k) * n // k``), and
``k`` is the smallest count that satisfies every per-core rule. ``cores needed by each rule`` is
that minimum for each rule alone. A family whose synapse memory has a bit-level encoding (Loihi 1)
supplies it through :meth:`CoreGrid.synapse_memory`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from slamp_deploy.chips.family import (
    Family,
    FitContext,
    Rule,
    count_caps,
    family_of,
    fan_in,
    fan_out,
    layer_kinds,
    limit,
    not_checked,
    yes_no,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.geometry import LayerCaps, LayerGeometry, LayerStats, core_starts

__all__ = ["CoreGrid", "CoreRule", "SynapseMemory", "per_core"]

_INCIDENCE_CELLS = 1 << 23  # per-core usage is computed this many (input, core) counts at a time
_COUNT_BUDGETS = ("count", "crossbar")  # synapse encodings whose budget is core.synapses_max
_REMEDY = {
    "core.neurons_max": "a single neuron cannot be split; reduce the layer",
    "core.in_axons_max": "prune whole inputs of the neuron, or reduce the layer's inputs",
    "core.synapse_memory_bits": "prune this layer further (find_fit_keep / --fit)",
    "core.synapses_max": "prune this layer further (find_fit_keep / --fit)",
}


class SynapseMemory(Protocol):
    """A bit-level synapse memory encoding."""

    def bits(self, counts: np.ndarray, group_size: int, dense_axon: np.ndarray | None
             ) -> np.ndarray:
        """Memory bits per (input axon, core group) holding ``counts`` kept synapses."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreRule:
    """One per-core rule of a layer: the most any of ``k`` core groups uses must stay within
    ``limit``. ``at_n`` is the usage at one neuron per core, when known cheaply."""

    rule: str
    limit: int
    usage: Callable[[int], int]
    figure: Figure
    relievable: bool
    at_n: int | None = None

    def fits(self, k: int) -> bool:
        return self.usage(k) <= self.limit


class _GroupUsage:
    """Per-core-group usage of one layer at ``k`` cores (axons and bits cached per ``k``)."""

    def __init__(self, lay: LayerGeometry, st: LayerStats, memory: SynapseMemory | None):
        self.lay, self.st, self.memory = lay, st, memory
        self._reduced: dict[int, tuple[int, int]] = {}

    def neurons(self, k: int) -> int:
        return -(-self.st.n_out // k)

    def axons(self, k: int) -> int:
        return self._reduce(k)[0]

    def bits(self, k: int) -> int:
        return self._reduce(k)[1]

    def synapses(self, k: int) -> int:
        n = self.st.n_out
        return int(np.add.reduceat(self.st.fan_in, core_starts(n, k)).max(initial=0)) if n else 0

    def _reduce(self, k: int) -> tuple[int, int]:
        """(most input axons, most synapse-memory bits) of any of the k core groups.

        Streams the groups a chunk at a time, so memory stays bounded whatever k is.
        """
        if k not in self._reduced:
            if self.st.column_blocks is not None and self.lay.kind != "linear":
                self._reduced[k] = self._reduce_blocks(k)
                return self._reduced[k]
            st, n = self.st, self.st.n_out
            starts = core_starts(n, k)
            chunk = max(1, _INCIDENCE_CELLS // max(st.n_in, 1))
            size = -(-n // k)
            axons = bits = 0
            for a in range(0, k, chunk):
                sub = starts[a : a + chunk]
                stop = int(starts[a + chunk]) if a + chunk < k else n
                counts = st.incidence(sub, stop)
                axons = max(axons, int((counts > 0).sum(axis=0).max(initial=0)))
                if self.memory is not None:
                    dense = None
                    if self.lay.kind == "linear":
                        dense = counts == np.diff(np.append(sub, stop))[None, :]
                    per_group = self.memory.bits(counts, size, dense).sum(axis=0)
                    bits = max(bits, int(per_group.max(initial=0)))
            self._reduced[k] = (axons, bits)
        return self._reduced[k]

    def _reduce_blocks(self, k: int) -> tuple[int, int]:
        """:meth:`_reduce` from the layer's column blocks (the same counts, fewer zero cells:
        a conv group narrower than a channel reads a window of the inputs, and input channels
        with the same kept taps are one row of that many). A group's sums add over the blocks
        that hold it (joined layers give one block list per layer)."""
        st, n = self.st, self.st.n_out
        assert st.column_blocks is not None
        size = -(-n // k)
        axons = np.zeros(k, dtype=np.int64)
        bits = np.zeros(k, dtype=np.int64)
        # the blocks come a bounded number of cells at a time (whole-channel groups in chunks)
        for idx, counts, weights in st.column_blocks(core_starts(n, k)):
            if not counts.size:
                continue
            used = counts > 0
            axons[idx] += (used if weights is None else used * weights).sum(axis=0)
            if self.memory is not None:
                b = self.memory.bits(counts, size, None)
                bits[idx] += (b if weights is None else b * weights).sum(axis=0)
        return int(axons.max(initial=0)), int(bits.max(initial=0))


def _min_cores(ok: Callable[[int], bool], lo: int, hi: int, ok_hi: bool | None = None
               ) -> int | None:
    """Smallest k in [lo, hi] with ok(k) (usage falls as k grows): galloping from ``lo`` by
    doubling, then bisection, so the cost follows the answer rather than ``hi`` (a per-core
    usage at k cores costs O(inputs x k); ``hi`` is one core per neuron). ``ok_hi``: ok(hi)
    when the caller knows it cheaply."""
    lo = max(1, min(lo, hi))
    if ok_hi is False:  # known cheaply: then no k passes (usage falls as k grows)
        return None
    if ok(lo):
        return lo
    if not (ok(hi) if ok_hi is None else ok_hi):
        return None
    a, b = lo, min(2 * lo, hi)  # ok(a) false
    while b < hi and not ok(b):
        a, b = b, min(2 * b, hi)
    while b - a > 1:  # ok(b) true (b == hi is known to pass)
        mid = (a + b) // 2
        if ok(mid):
            b = mid
        else:
            a = mid
    return b


# ---- the per-core rules of one layer: a CoreRule to map with, or a result saying why not

_Built = CoreRule | RuleResult


def _neurons_rule(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built:
    fig = p.core.neurons_max
    npc = fig.as_int()
    if npc is None:
        return not_checked("core.neurons_max", lay.name, "figure unknown")
    return CoreRule(rule="core.neurons_max", limit=npc, usage=use.neurons, figure=fig,
                    relievable=False)


def _axons_rule(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built:
    fig = p.core.in_axons_max
    ax = fig.as_int()
    if ax is None:
        return limit(fig, "core.in_axons_max", lay.name, 0, relievable=True, remedy="")
    # one neuron per core: every synapse of a neuron comes through its own input axon
    return CoreRule(rule="core.in_axons_max", limit=ax, usage=use.axons, figure=fig,
                    relievable=True, at_n=int(use.st.fan_in.max(initial=0)))


def _memory_rule(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built | None:
    fig, enc = p.core.synapse_memory_bits, p.core.synapse_encoding
    if use.memory is not None:
        at_n = None
        if use.st.n_out:  # k == n: each axon carries one synapse (dense when the layer is linear)
            one = np.ones(1, dtype=np.int64)
            dense1 = np.ones(1, dtype=bool) if lay.kind == "linear" else None
            at_n = int(use.st.fan_in.max(initial=0)) * int(use.memory.bits(one, 1, dense1)[0])
        return CoreRule(rule="core.synapse_memory_bits", limit=fig.as_int() or 0,
                        usage=use.bits, figure=fig, relievable=True, at_n=at_n)
    if enc.value == "none":
        return RuleResult(rule="core.synapse_memory_bits", layer=lay.name, status="no_limit",
                          confidence=enc.confidence, reason=enc.source)
    if enc.value not in _COUNT_BUDGETS:  # count budgets: core.synapses_max instead
        why = "synapse encoding unknown" if not enc.known else "figure unknown"
        return not_checked("core.synapse_memory_bits", lay.name, why)
    return None


def _synapses_rule(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built | None:
    fig = p.core.synapses_max
    if p.core.synapse_encoding.value not in _COUNT_BUDGETS:
        return None
    if not fig.usable:
        return limit(fig, "core.synapses_max", lay.name, 0, relievable=True, remedy="")
    return CoreRule(rule="core.synapses_max", limit=fig.as_int() or 0, usage=use.synapses,
                    figure=fig, relievable=True)


def _out_axons_result(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built:
    fig = p.core.out_axons_max
    if fig.usable:
        return not_checked("core.out_axons_max", lay.name,
                           "needs the downstream routing, which this checker does not model",
                           fig.confidence)
    return limit(fig, "core.out_axons_max", lay.name, 0, relievable=False, remedy="")


_BUILDERS = (_neurons_rule, _axons_rule, _memory_rule, _synapses_rule, _out_axons_result)


def _choose_cores(n: int, rules: Sequence[CoreRule]) -> tuple[int, dict[str, int | None]]:
    """The cores of a layer of ``n`` units, and the fewest each rule alone needs."""
    needed: dict[str, int | None] = {}
    lo = 1
    for r in rules:
        if r.rule == "core.neurons_max":
            needed[r.rule] = lo = -(-n // r.limit)
        else:
            ok_n = r.at_n <= r.limit if r.at_n is not None else None
            needed[r.rule] = _min_cores(r.fits, 1, n, ok_n)
    k = max([lo, *[v for v in needed.values() if v is not None]])
    if any(v is None for v in needed.values()):
        k = n  # a rule no mapping satisfies: spread to one neuron per core, as far as it goes
    # The rules' own minima need not hold together (group boundaries shift): step up.
    while k < n and not all(r.fits(k) for r in rules):
        k += 1
    return k, needed


def _map_layer(ctx: FitContext, grid: CoreGrid, lay: LayerGeometry, st: LayerStats
               ) -> Iterable[RuleResult]:
    use = _GroupUsage(lay, st, grid.synapse_memory(lay, ctx.profile))
    rules: list[CoreRule] = []
    for build in _BUILDERS:
        made = build(ctx.profile, lay, use)
        if isinstance(made, CoreRule):
            rules.append(made)
        elif made is not None:
            yield made
    n = st.n_out
    if n == 0:
        ctx.cores[lay.name] = 0
        return
    k, needed = _choose_cores(n, rules)
    ctx.cores[lay.name] = k
    ctx.cores_by_rule[lay.name] = [(r.rule, needed[r.rule]) for r in rules]
    for r in rules:
        value = r.at_n if k == n and r.at_n is not None else r.usage(k)
        yield yes_no(r.rule, lay.name, value <= r.limit, value=value, limit=r.limit,
                     comparison="<=", cores_needed=needed[r.rule], relievable=r.relievable,
                     confidence=r.figure.confidence,
                     reason=_REMEDY[r.rule].format(limit=r.limit)
                     + " (one neuron alone exceeds a core)")


def per_core(ctx: FitContext) -> Iterable[RuleResult]:
    """Each layer on the fewest cores that satisfy every per-core rule (records the cores)."""
    grid = family_of(ctx.profile)
    assert isinstance(grid, CoreGrid)
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        yield from _map_layer(ctx, grid, lay, st)


class CoreGrid(Family):
    """A chip of many equal cores, each layer mapped onto its own contiguous core groups."""

    maps_joins = True  # the rules read only connectivity counts, so joined layers merge
    rule_words: ClassVar[Mapping[str, str]] = {
        "core.neurons_max": "neurons per core",
        "core.in_axons_max": "input axons per core",
        "core.synapse_memory_bits": "synapse memory bits per core",
        "core.synapses_max": "synapses per core",
    }
    rules: ClassVar[tuple[Rule, ...]] = (layer_kinds, fan_in, fan_out, per_core)

    def synapse_memory(self, lay: LayerGeometry, profile: HardwareProfile
                       ) -> SynapseMemory | None:
        """The bit-level synapse memory of ``lay``'s cores, or ``None`` (counted budgets)."""
        return None

    def caps(self, layers: Sequence[LayerGeometry], profile: HardwareProfile
             ) -> dict[str, LayerCaps]:
        budget = profile.core.synapse_encoding.value in _COUNT_BUDGETS
        return count_caps(layers, profile, core_budget=budget)
