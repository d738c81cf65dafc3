"""The per-core mapper shared by the core-grid families (Loihi-class, TrueNorth, SpiNNaker):
each layer on its own cores, the fewest cores that satisfy every per-core rule, and the per-core
synapse budget as a cap for the allocator.

Core mapping: each layer (each neuron population, its joined layers merged) gets its own cores;
its units are split into ``k`` contiguous, equal groups (``starts = arange(k) * n // k``), and
``k`` is the fewest cores the search finds that satisfy every per-core rule; ``cores needed by
each rule`` is what the search finds for each rule alone. A family whose synapse memory has a
bit-level encoding (Loihi 1) supplies it through :meth:`CoreGrid.synapse_memory`.

The search: a rule's usage at ``k`` cores is the most any group uses, and it falls as ``k``
grows, but not strictly (the group boundaries shift with ``k``, and a group across two output
channels reads both channels' inputs), so the search finds a count that fits where the count
below it that the search tried does not, not always the global minimum. It gallops and bisects
on a cheap lower bound (the groups of a few *hot* channels only, :class:`_GroupUsage`) and
counts every group only where the bound passes; it searches again over the counts that are
multiples of the channels (no group across two channels), which often fit with fewer cores,
and takes the smaller answer. Every answer is checked on every group.
"""

from __future__ import annotations

import math
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
    ``limit``. ``at_n`` is the usage at one neuron per core, when known cheaply; ``lower`` a
    cheap lower bound of ``usage`` and ``learn(k)`` what tightens it after a full count at
    ``k``, when the usage has them."""

    rule: str
    limit: int
    usage: Callable[[int], int]
    figure: Figure
    relievable: bool
    at_n: int | None = None
    lower: Callable[[int], int] | None = None
    learn: Callable[[int], None] | None = None
    aligned: int | None = None  # counts that are multiples of this split no region in two

    def fits(self, k: int) -> bool:
        """Whether ``k`` cores satisfy the rule (the full count only where the bound passes)."""
        if self.lower is not None and self.lower(k) > self.limit:
            return False
        return self.usage(k) <= self.limit

    def min_cores(self, n: int, ok_n: bool | None, start: int = 1) -> int | None:
        """The fewest of 1..n cores this rule's search finds. Without a lower bound:
        :func:`_min_cores` on the full count. With one, the search runs on the bound and the
        full count decides only the answers it gives (:meth:`_bounded`), over every count and
        again over the counts that split no region (``aligned``: a multiple of the regions),
        whose usage has no groups across two regions and often fits sooner: the smaller
        answer is taken. Either answer fits, and the next count below it that its search
        tried does not. The bounded searches start at ``start`` (the cores the layer needs
        anyway) and look below it only when it fits."""
        if self.lower is None:
            return _min_cores(self.fits, 1, n, ok_n)
        k = self._bounded(start, n, ok_n, 1)
        r = self.aligned
        if k is not None and r is not None and 1 < r < k:
            q = self._bounded(-(-start // r), n // r, ok_n if n % r == 0 else None, r, k)
            if q is not None and q * r < k:
                k = q * r
        return k

    def _bounded(self, lo: int, hi: int, ok_hi: bool | None, scale: int,
                 below: int | None = None) -> int | None:
        """The smallest i in [lo, hi] the search finds with ``scale * i`` cores fitting: it
        searches on the bound, counts in full only the answer, and where that fails (the
        bound was loose there) tightens the bound (:attr:`learn`) and goes on above it,
        galloping up from it by steps of 1, 2, 4, ... None once the answer on the bound
        reaches ``below`` cores (no better than an answer in hand)."""
        lower = self.lower
        assert lower is not None

        def ok(i: int) -> bool:
            return lower(scale * i) <= self.limit

        lo = max(1, min(lo, hi))
        # where lo already passes on the bound, the answer is lo or below it
        start, top, top_ok = (1, lo, True) if lo > 1 and ok(lo) else (lo, hi, ok_hi)
        step: int | None = None
        while True:
            i = _min_cores(ok, start, top, top_ok, step)
            if i is not None and below is not None and scale * i >= below:
                return None
            if i is None or self.usage(scale * i) <= self.limit:
                return i
            if self.learn is not None:
                self.learn(scale * i)
            # lower(scale * i) is now the full count: the search moves on above it
            start, step, top, top_ok = i + 1, 1, hi, ok_hi
            if start > hi:
                return None


class _GroupUsage:
    """Per-core-group usage of one layer at ``k`` cores (axons and bits cached per ``k``).

    :meth:`lower_axons` and :meth:`lower_bits` are the same maxima over only the groups that
    touch the *hot* regions (output channels, for a conv layer): a lower bound at a fraction of
    the cost, which rules a ``k`` out exactly when it already exceeds the limit. A full count
    that the bound let through (:meth:`learn`) makes the regions of its largest groups hot, so
    the bound at that ``k`` becomes the full count."""

    def __init__(self, lay: LayerGeometry, st: LayerStats, memory: SynapseMemory | None):
        self.lay, self.st, self.memory = lay, st, memory
        self._reduced: dict[int, tuple[int, int]] = {}
        self._argmax: dict[int, tuple[int, int]] = {}  # k -> the groups with the most of each
        self._lower: dict[int, tuple[int, int]] = {}  # k -> bounds over the hot regions now
        n = st.n_out
        # a region: the units of one output channel (a conv's positions); a bound needs
        # regions a group can be narrower than (a linear layer has none)
        self.region = math.prod(lay.out_shape[1:]) if len(lay.out_shape) > 1 else n
        self.bounded = lay.kind != "linear" and 0 < self.region < n
        self.regions = n // self.region if self.bounded else None
        self.hot: set[int] = set()
        if self.bounded:  # seed: the region of the most kept synapses
            per = np.add.reduceat(st.fan_in, np.arange(0, n, self.region))
            self.hot.add(int(np.argmax(per)))

    def neurons(self, k: int) -> int:
        return -(-self.st.n_out // k)

    def axons(self, k: int) -> int:
        return self._reduce(k)[0]

    def bits(self, k: int) -> int:
        return self._reduce(k)[1]

    def lower_axons(self, k: int) -> int:
        return self._bound(k)[0]

    def lower_bits(self, k: int) -> int:
        return self._bound(k)[1]

    def synapses(self, k: int) -> int:
        n = self.st.n_out
        return int(np.add.reduceat(self.st.fan_in, core_starts(n, k)).max(initial=0)) if n else 0

    def learn(self, k: int) -> None:
        """Make the regions of the groups with the most axons and bits at ``k`` hot."""
        self._reduce(k)
        if not self.bounded or k not in self._argmax:
            return
        starts = core_starts(self.st.n_out, k)
        stops = np.append(starts[1:], self.st.n_out)
        grown = False
        for j in set(self._argmax[k]):
            first, last = int(starts[j]) // self.region, (int(stops[j]) - 1) // self.region
            for r in range(first, last + 1):
                grown |= r not in self.hot
                self.hot.add(r)
        if grown:
            self._lower.clear()

    def _bound(self, k: int) -> tuple[int, int]:
        """(axons, bits) maxima over the groups that touch a hot region (the full maxima when
        there is no bound, or once they are known). A group reaching more than a region past
        a run of hot regions is cut at the run's edge: the part holds fewer of its units, so
        no more axons and, at the mapping's group size, no more bits (the encoding grows with
        the synapses an axon carries), and a bound at ``k`` few cores costs a run's units, not
        the layer's."""
        if not self.bounded or k in self._reduced:
            return self._reduce(k)
        if k not in self._lower:
            n, reg, starts = self.st.n_out, self.region, core_starts(self.st.n_out, k)
            runs: list[list[int]] = []  # runs of hot regions [first, end)
            for r in sorted(self.hot):
                if runs and r <= runs[-1][1]:
                    runs[-1][1] = r + 1
                else:
                    runs.append([r, r + 1])
            axons = bits = 0
            for r0, r1 in runs:
                lo, hi = r0 * reg, min(r1 * reg, n)
                a = int(np.searchsorted(starts, lo, side="right")) - 1  # groups a..b-1
                b = int(np.searchsorted(starts, hi, side="left"))
                sub = starts[a:b].copy()
                if sub[0] < lo - reg:
                    sub[0] = lo
                stop = int(starts[b]) if b < k else n
                if stop > hi + reg:
                    stop = hi
                ax, bt = self._per_group(sub, stop, -(-n // k))
                axons, bits = max(axons, int(ax.max())), max(bits, int(bt.max()))
            self._lower[k] = (axons, bits)
        return self._lower[k]

    def _reduce(self, k: int) -> tuple[int, int]:
        """(most input axons, most synapse-memory bits) of any of the k core groups."""
        if k not in self._reduced:
            n = self.st.n_out
            axons, bits = self._per_group(core_starts(n, k), n, -(-n // k))
            self._reduced[k] = int(axons.max(initial=0)), int(bits.max(initial=0))
            if len(axons):
                self._argmax[k] = int(np.argmax(axons)), int(np.argmax(bits))
        return self._reduced[k]

    def _per_group(self, starts: np.ndarray, stop: int, size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Input axons and synapse-memory bits of the groups ``starts`` (the last ends at
        ``stop``). The encoding's index bits follow the mapping's group size, ``ceil(n / k)``,
        whichever of its groups are counted (``size``)."""
        if self.st.column_blocks is not None and self.lay.kind != "linear":
            return self._from_blocks(starts, stop, size)
        return self._from_incidence(starts, stop, size)

    def _from_incidence(self, starts: np.ndarray, stop: int, size: int
                        ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_per_group` from the incidence, streamed a chunk of groups at a time, so
        memory stays bounded whatever k is."""
        st, k = self.st, len(starts)
        chunk = max(1, _INCIDENCE_CELLS // max(st.n_in, 1))
        axons = np.zeros(k, dtype=np.int64)
        bits = np.zeros(k, dtype=np.int64)
        for a in range(0, k, chunk):
            sub = starts[a : a + chunk]
            end = int(starts[a + chunk]) if a + chunk < k else stop
            counts = st.incidence(sub, end)
            axons[a : a + chunk] = (counts > 0).sum(axis=0)
            if self.memory is not None:
                dense = None
                if self.lay.kind == "linear":
                    dense = counts == np.diff(np.append(sub, end))[None, :]
                bits[a : a + chunk] = self.memory.bits(counts, size, dense).sum(axis=0)
        return axons, bits

    def _from_blocks(self, starts: np.ndarray, stop: int, size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_per_group` from the layer's column blocks (the same counts as the
        incidence, fewer zero cells: a conv group narrower than a channel reads a window of
        the inputs, and input channels with the same kept taps are one row of that many). A
        group's sums add over the blocks that hold it (joined layers give one block list per
        layer)."""
        st = self.st
        assert st.column_blocks is not None
        axons = np.zeros(len(starts), dtype=np.int64)
        bits = np.zeros(len(starts), dtype=np.int64)
        # the blocks come a bounded number of cells at a time (whole-channel groups in chunks)
        for idx, counts, weights in st.column_blocks(starts, stop):
            if not counts.size:
                continue
            used = counts > 0
            axons[idx] += (used if weights is None else used * weights).sum(axis=0)
            if self.memory is not None:
                b = self.memory.bits(counts, size, None)
                bits[idx] += (b if weights is None else b * weights).sum(axis=0)
        return axons, bits


def _min_cores(ok: Callable[[int], bool], lo: int, hi: int, ok_hi: bool | None = None,
               step: int | None = None) -> int | None:
    """Smallest k in [lo, hi] with ok(k) (usage falls as k grows): galloping from ``lo`` by
    doubling (or, given ``step``, by steps of step, 2 step, 4 step, ...), then bisection, so
    the cost follows the answer rather than ``hi`` (a per-core usage at k cores costs
    O(inputs x k); ``hi`` is one core per neuron). ``ok_hi``: ok(hi) when the caller knows it
    cheaply."""
    lo = max(1, min(lo, hi))
    if ok_hi is False:  # known cheaply: then no k passes (usage falls as k grows)
        return None
    if ok(lo):
        return lo
    if not (ok(hi) if ok_hi is None else ok_hi):
        return None
    a, b = lo, min(2 * lo if step is None else lo + step, hi)  # ok(a) false
    while b < hi and not ok(b):
        if step is None:
            a, b = b, min(2 * b, hi)
        else:
            step *= 2
            a, b = b, min(b + step, hi)
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
                    relievable=True, at_n=int(use.st.fan_in.max(initial=0)),
                    lower=use.lower_axons, learn=use.learn, aligned=use.regions)


def _memory_rule(p: HardwareProfile, lay: LayerGeometry, use: _GroupUsage) -> _Built | None:
    fig, enc = p.core.synapse_memory_bits, p.core.synapse_encoding
    if use.memory is not None:
        at_n = None
        if use.st.n_out:  # k == n: each axon carries one synapse (dense when the layer is linear)
            one = np.ones(1, dtype=np.int64)
            dense1 = np.ones(1, dtype=bool) if lay.kind == "linear" else None
            at_n = int(use.st.fan_in.max(initial=0)) * int(use.memory.bits(one, 1, dense1)[0])
        return CoreRule(rule="core.synapse_memory_bits", limit=fig.as_int() or 0,
                        usage=use.bits, figure=fig, relievable=True, at_n=at_n,
                        lower=use.lower_bits, learn=use.learn, aligned=use.regions)
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
            needed[r.rule] = r.min_cores(n, ok_n, lo)
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
