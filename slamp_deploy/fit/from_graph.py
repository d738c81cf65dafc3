"""From a traced :class:`~slamp_deploy.model.graph.SpikingGraph` and its masks to the neutral
:class:`~slamp_deploy.geometry.LayerGeometry` list the fit check and the capped allocator read,
with a residual graph's wiring (sources, joined populations, identity shortcuts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch

from slamp_deploy.errors import ModelError
from slamp_deploy.geometry import IDENTITY, LayerGeometry, LayerTraits, NeuronTraits, Pool
from slamp_deploy.geometry import INPUT as INPUT_SOURCE
from slamp_deploy.model.graph import (
    ADD,
    INPUT,
    NEURON_KINDS,
    SYNAPTIC_KINDS,
    Layer,
    SpikingGraph,
    neuron_spec,
)

__all__ = ["geometries"]


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
        stride, padding, dilation, groups = ((), (), (), 1) if la.kind == "linear" else \
            conv_attributes(la)
        out.append(LayerGeometry(
            name=la.name, kind=la.kind, in_shape=tuple(op.in_shape), out_shape=tuple(op.out_shape),
            mask=masks[la.name].detach().cpu().numpy().astype(bool),
            neuron_shape=tuple(la.neuron.out_shape) if la.neuron is not None else (),
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            traits=layer_traits(graph, la)))
    return out if graph.is_chain or not wiring else _dag_wiring(graph, out)


def conv_attributes(layer: Layer) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """``(stride, padding, dilation, groups)`` of a conv layer as the counting reads them: torch's
    ``padding="same"``/``"valid"`` turned into numbers, and only zero padding accepted (the fit
    check and the activity counts both count padded positions as absent inputs).

    Raises:
        ModelError: a padding mode other than zeros, or ``"same"`` padding that is uneven.
    """
    m = layer.module
    kernel = tuple(layer.weight.shape[2:])
    stride, dilation = tuple(m.stride), tuple(m.dilation)  # type: ignore[arg-type]
    if m.padding_mode != "zeros":
        raise ModelError(f"layer {layer.name!r}: padding_mode = {m.padding_mode!r}: connectivity "
                         f"is counted with zero padding; use padding_mode='zeros'")
    padding = m.padding
    if isinstance(padding, str):
        total = [0 if padding == "valid" else d * (k - 1)
                 for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            raise ModelError(f"layer {layer.name!r}: padding='same' pads unevenly for kernel "
                             f"{kernel}; connectivity counts symmetric padding; give explicit "
                             f"padding")
        padding = tuple(t // 2 for t in total)
    return (stride, tuple(int(p) for p in padding),  # type: ignore[union-attr]
            dilation, int(m.groups))  # type: ignore[arg-type]


def _pair(v: object, n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * n  # type: ignore[call-overload]


def _distinct(t: torch.Tensor) -> tuple[float, ...]:
    return tuple(float(x) for x in torch.unique(t.detach().flatten()).tolist())


def layer_traits(graph: SpikingGraph, la: Layer) -> LayerTraits:
    """The bias, Flatten, pooling and neuron facts of one layer (:class:`LayerTraits`)."""
    bias = getattr(la.module, "bias", None)
    has_bias = "none" if bias is None else "nonzero" if bool(torch.any(bias != 0)) else "zero"
    flat_from: tuple[int, ...] = ()
    k = graph.sources(la.op_index)[0]
    while k != INPUT and graph.ops[k].kind in ("flatten", "reshape", "dropout"):
        if graph.ops[k].kind != "dropout" and len(graph.ops[k].in_shape) == 3:
            flat_from = tuple(graph.ops[k].in_shape)
        k = graph.sources(k)[0]
    neuron_at = None if la.neuron is None else \
        next(i for i, op in enumerate(graph.ops) if op is la.neuron)
    pools = []
    for j in graph.downstream(la.op_index, through_neurons=True):
        op = graph.ops[j]
        if op.kind in ("avgpool", "maxpool") and op.module is not None:
            d = len(op.in_shape) - 1
            kernel = _pair(op.module.kernel_size, d)
            stride = _pair(op.module.stride or op.module.kernel_size, d)
            pools.append(Pool(kind=op.kind, kernel=kernel, stride=stride,
                              after_neurons=neuron_at is not None and j > neuron_at))
    neuron = None
    if la.neuron is not None:
        spec = neuron_spec(la.neuron)
        neuron = NeuronTraits(kind=la.neuron.kind, betas=_distinct(spec.beta),
                              alphas=() if spec.alpha is None else _distinct(spec.alpha),
                              reset_mechanism=spec.reset_mechanism)
    return LayerTraits(bias=has_bias, flat_from=flat_from, pools=tuple(pools), neuron=neuron)
