r"""Structured pruning: which whole output neurons (linear layers) and output channels (conv
layers) a network keeps, layer-adaptively.

A *group* is the set of synaptic layers whose output channels are one neuron population's
channels: a layer on its own, or the layers whose currents a residual join adds (they must lose
the same channels, so they are one group; an identity shortcut ties the block's input group in
too). A group that reaches the model's outputs (the readout's classes), the network input (an
identity shortcut from it) or a reshape before a join is *fixed*: it keeps every channel.

Channel ``j`` of group ``g`` has the group magnitude

.. math::  m_{g,j}^2 = \sum_{l \in g} s_{l,j}^2 \, \lVert W_l[j] \rVert_2^2

(``s`` the scale of a BatchNorm right after the layer, ``|gamma| / sqrt(var + eps)``, else 1):
the energy of the current the channel carries. The scores (``docs/method.md``, "Structured
SLAMP"): LAMP-group sorts a group's channels ascending by ``m^2`` and scores position ``u`` as
``m_u^2 / sum_{v >= u} m_v^2``; SLAMP-group multiplies that by the group's temporal factor
``lambda_g`` (the largest ``lambda_l`` of its layers); a global top-k keeps the channels, with at
least one per group. The uniform baseline removes the same fraction of every group by L1 norm
(Li et al. 2017). :func:`plan_structure` returns the frozen :class:`StructurePlan`;
:mod:`slamp_deploy.prune.compact` turns it into a smaller model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from slamp_deploy.errors import ModelError, UsageError
from slamp_deploy.model.graph import ADD, INPUT, NEURON_KINDS, SYNAPTIC_KINDS, Op, SpikingGraph

__all__ = [
    "STRUCTURE_METHODS",
    "ChannelGroup",
    "StructurePlan",
    "channel_groups",
    "group_magnitudes",
    "group_scores",
    "parse_structure",
    "plan_structure",
    "structure_method",
]

#: --method -> the structured score it selects (the other methods have no structured form)
STRUCTURE_METHODS = {"slamp": "slamp-group", "lamp": "lamp-group", "uniform": "uniform-l1"}

#: ops that carry their input's channels one-to-one along dim 0 (per channel, or a pooling)
_CHANNELWISE = ("batchnorm", "dropout", "avgpool", "maxpool", *NEURON_KINDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelGroup:
    """Layers whose output channels are removed together."""

    name: str  # the first layer's name
    layers: tuple[str, ...]  # member layers, in network order
    channels: int
    fixed: str | None = None  # why every channel stays (None: prunable)


@dataclass(frozen=True, slots=True, kw_only=True)
class StructurePlan:
    """The channels every group keeps (sorted indices), and how they were chosen."""

    method: str  # "slamp-group" | "lamp-group" | "uniform-l1"
    groups: tuple[ChannelGroup, ...]
    keep: Mapping[str, tuple[int, ...]]  # group name -> kept channel indices, ascending
    group_score: Mapping[str, float]  # lambda_g (slamp-group), else 1

    @property
    def layer_keep(self) -> dict[str, tuple[int, ...]]:
        """Layer name -> its kept output channels (every member of a group the same)."""
        return {la: self.keep[g.name] for g in self.groups for la in g.layers}

    @property
    def removed(self) -> int:
        return sum(g.channels - len(self.keep[g.name]) for g in self.groups)

    @property
    def prunable(self) -> int:
        """Channels that could be removed (all but one of every prunable group)."""
        return sum(g.channels - 1 for g in self.groups if g.fixed is None)


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb), key=self.order.__getitem__)
            self.parent[hi] = lo  # the earlier layer names the group

    order: dict[str, int]


_IN = "@input"  # the origin of the network input's channels
_FLAT = "@reshaped"  # channels that went through a reshape (no longer along dim 0)


def _origins(graph: SpikingGraph) -> tuple[list[str], _Union, dict[str, str]]:
    """For every op, the origin (a layer name, the input or a reshape) of its output channels;
    the union of the origins residual adds join (the input and "reshaped" are nodes too); the
    layers that are fixed by themselves (grouped convolutions)."""
    uf = _Union()
    uf.order = {la.name: i for i, la in enumerate(graph.layers)} | {_IN: -2, _FLAT: -1}
    fixed: dict[str, str] = {}
    origin: list[str] = []

    def src(i: int, k: int = 0) -> str:
        j = graph.sources(i)[k]
        return _IN if j == INPUT else origin[j]

    for i, op in enumerate(graph.ops):
        if op.kind in SYNAPTIC_KINDS:
            origin.append(op.name)
            uf.find(op.name)
            if _unsliceable(op):
                fixed[op.name] = ("is a grouped convolution" if op.kind != "linear" else
                                  "is a Linear over a multi-dimensional input")
        elif op.kind in _CHANNELWISE:
            origin.append(src(i))
        elif op.kind == ADD:
            uf.union(src(i, 0), src(i, 1))
            origin.append(src(i, 0))
        else:  # flatten / reshape: dim 0 keeps its meaning only if it is unchanged
            same = op.in_shape[:1] == op.out_shape[:1] and len(op.in_shape) == len(op.out_shape)
            origin.append(src(i) if same else _FLAT)
    return origin, uf, fixed


def _unsliceable(op: Op) -> bool:
    if op.kind == "linear":
        return len(op.in_shape) != 1
    return getattr(op.module, "groups", 1) != 1


def _readout_origins(graph: SpikingGraph, origin: list[str]) -> set[str]:
    """Origins whose channels cannot be removed one by one: the last op's (the model's
    outputs), and those feeding a grouped convolution or a Linear over a multi-dimensional
    input (which reads its last dimension, not dim 0)."""
    out = {origin[-1]}
    for la in graph.layers:
        if _unsliceable(graph.ops[la.op_index]):
            j = graph.sources(la.op_index)[0]
            out.add(_IN if j == INPUT else origin[j])
    return out


def channel_groups(graph: SpikingGraph) -> tuple[ChannelGroup, ...]:
    """The groups of ``graph``'s synaptic layers, in network order of their first layer."""
    origin, uf, fixed = _origins(graph)
    why: dict[str, str] = {uf.find(_IN): "is joined with the network input",
                           uf.find(_FLAT): "is joined through a reshape"}
    for o in _readout_origins(graph, origin):
        if o not in (_IN, _FLAT):
            why.setdefault(uf.find(o), "drives the model's outputs")
    for o, reason in fixed.items():
        why.setdefault(uf.find(o), reason)
    members: dict[str, list[str]] = {}
    for la in graph.layers:
        members.setdefault(uf.find(la.name), []).append(la.name)
    return tuple(ChannelGroup(name=names[0], layers=tuple(names),
                              channels=int(graph.layer(names[0]).weight.shape[0]),
                              fixed=why.get(root)) for root, names in members.items())


def _bn_scale(graph: SpikingGraph, op_index: int) -> torch.Tensor | None:
    """``|gamma| / sqrt(var + eps)`` of the BatchNorm that reads layer ``op_index`` directly."""
    for j in graph.consumers[op_index]:
        bn = graph.ops[j].module
        if graph.ops[j].kind == "batchnorm" and isinstance(bn, nn.modules.batchnorm._BatchNorm):
            var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
            scale = torch.ones_like(var) if bn.weight is None else bn.weight.detach().abs()
            return (scale / torch.sqrt(var + bn.eps)).double().cpu()
    return None


def group_magnitudes(graph: SpikingGraph, group: ChannelGroup, norm: int = 2) -> np.ndarray:
    """Per channel: ``sum_l s_{l,j}^2 ||W_l[j]||_2^2`` (norm 2) or ``sum_l s_{l,j} ||W_l[j]||_1``
    (norm 1, the uniform baseline's L1 norm), over the group's layers."""
    total = torch.zeros(group.channels, dtype=torch.float64)
    for name in group.layers:
        la = graph.layer(name)
        w = la.weight.detach().double().cpu().flatten(1)
        s = _bn_scale(graph, la.op_index)
        s = torch.ones(group.channels, dtype=torch.float64) if s is None else s
        total += (s * s * (w * w).sum(1)) if norm == 2 else (s * w.abs().sum(1))
    return total.numpy()


def group_scores(magnitude_sq: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """LAMP-group scores of one group (times ``lam``): ``m_u^2 / sum_{v >= u} m_v^2`` over the
    channels sorted ascending by ``m^2`` (stable); the largest channel scores ``lam``."""
    order = np.argsort(magnitude_sq, kind="stable")
    s = magnitude_sq[order]
    denom = np.cumsum(s[::-1])[::-1]
    sc = np.where(denom > 0, s / np.where(denom > 0, denom, 1.0), 0.0)
    out = np.empty_like(sc)
    out[order] = sc
    return out * lam


def parse_structure(value: str | None, fit: bool) -> float | None:
    """``--structure``'s value as the fraction of prunable neurons and channels to remove at
    least (None: no structure step). ``neurons`` needs ``--fit`` (which finds the fraction);
    ``neurons:F`` removes F (with ``--fit``: at least F).

    Raises:
        UsageError: another value, a fraction outside [0, 1), or ``neurons`` without ``--fit``.
    """
    if value is None:
        return None
    kind, sep, frac = value.partition(":")
    if kind != "neurons":
        raise UsageError(f"--structure {value!r}: use 'neurons' (with --fit) or 'neurons:F' "
                         f"(remove the fraction F of the hidden neurons and channels)")
    if not sep:
        if not fit:
            raise UsageError("--structure neurons: give the fraction to remove "
                             "(--structure neurons:0.3) or add --fit to find the smallest "
                             "removal that fits --target")
        return 0.0
    try:
        f = float(frac)
    except ValueError:
        f = math.nan
    if not (0.0 <= f < 1.0):
        raise UsageError(f"--structure {value!r}: the fraction must be a number in [0, 1)")
    return f


def structure_method(method: str) -> str:
    """The structured score ``--method`` selects.

    Raises:
        UsageError: a method with no structured form.
    """
    if method not in STRUCTURE_METHODS:
        raise UsageError(f"--structure neurons with --method {method}: the structured step "
                         f"supports --method {', '.join(STRUCTURE_METHODS)} "
                         f"({', '.join(STRUCTURE_METHODS.values())})")
    return STRUCTURE_METHODS[method]


def plan_structure(graph: SpikingGraph, method: str, remove: float, *,
                   lambdas: Mapping[str, float] | None = None,
                   groups: Sequence[ChannelGroup] | None = None) -> StructurePlan:
    """Remove the fraction ``remove`` of the prunable groups' channels (``--method`` ``slamp``,
    ``lamp`` or ``uniform``), keeping at least one channel per group.

    Score methods keep the global top ``round((1 - remove) * N)`` channel scores (N: channels
    of the prunable groups); ``uniform`` keeps ``max(1, round((1 - remove) * n_g))`` of every
    group by L1 norm. Ties go to the lower channel index. Nested: a larger ``remove`` keeps a
    subset.

    Raises:
        UsageError: ``remove`` outside [0, 1], or a method with no structured form.
    """
    kind = structure_method(method)
    if not (0.0 <= remove <= 1.0 and math.isfinite(remove)):
        raise UsageError(f"structure fraction {remove}: must be in [0, 1]")
    groups = tuple(channel_groups(graph) if groups is None else groups)
    lam = {g.name: (max(float((lambdas or {}).get(n, 1.0)) for n in g.layers)
                    if kind == "slamp-group" else 1.0) for g in groups}
    free = [g for g in groups if g.fixed is None]
    keep: dict[str, tuple[int, ...]] = {g.name: tuple(range(g.channels)) for g in groups
                                        if g.fixed is not None}
    if kind == "uniform-l1":
        for g in free:
            n = max(1, round((1.0 - remove) * g.channels))
            keep[g.name] = _top(group_magnitudes(graph, g, norm=1), n)
    else:
        keep.update(_global_top(graph, free, lam, remove))
    return StructurePlan(method=kind, groups=groups, keep=keep, group_score=lam)


def _top(values: np.ndarray, n: int) -> tuple[int, ...]:
    """Indices of the ``n`` largest values (ties: lower index), ascending."""
    order = np.lexsort((np.arange(len(values)), -values))
    return tuple(sorted(int(i) for i in order[:n]))


def _global_top(graph: SpikingGraph, free: Sequence[ChannelGroup], lam: Mapping[str, float],
                remove: float) -> dict[str, tuple[int, ...]]:
    """Global top-k of the group scores, the best channel of every group kept first."""
    total = sum(g.channels for g in free)
    k = max(len(free), round((1.0 - remove) * total))
    rows = []  # (score, group position, channel)
    best: dict[int, int] = {}
    for gi, g in enumerate(free):
        sc = group_scores(group_magnitudes(graph, g), lam[g.name])
        best[gi] = _top(sc, 1)[0]
        rows += [(float(s), gi, j) for j, s in enumerate(sc) if j != best[gi]]
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    kept: dict[int, list[int]] = {gi: [j] for gi, j in best.items()}
    for _s, gi, j in rows[:max(0, k - len(free))]:
        kept[gi].append(j)
    return {g.name: tuple(sorted(kept[gi])) for gi, g in enumerate(free)}


def check_keep(groups: Sequence[ChannelGroup], keep: Mapping[str, Sequence[int]]) -> None:
    """Refuse a hand-made keep map: a fixed group losing channels (by layer name and why), an
    unknown group, an empty or out-of-range keep set.

    Raises:
        ModelError: naming the layer.
    """
    by = {g.name: g for g in groups}
    layer_group = {la: g for g in groups for la in g.layers}
    for name, idx in keep.items():
        g = by.get(name) or layer_group.get(name)
        if g is None:
            raise ModelError(f"structure: no layer named {name!r}; layers: "
                             f"{', '.join(layer_group)}")
        if len(idx) == 0 or min(idx) < 0 or max(idx) >= g.channels or len(set(idx)) != len(idx):
            raise ModelError(f"structure: layer {name!r} keeps {len(idx)} channel indices, which "
                             f"must be distinct, in 0..{g.channels - 1}, and at least one")
        if g.fixed is not None and len(idx) != g.channels:
            raise ModelError(f"structure: layer {name!r} cannot lose outputs: it {g.fixed} "
                             f"({g.channels} {'classes' if 'outputs' in g.fixed else 'channels'}"
                             f"); keep all of them")
