"""The Speck / DYNAP-CNN family (``[speck]``): one layer per core, the per-core kernel and neuron
memories with sinabs' power-of-two rounding, the layer shape rules, and the one-to-one matching
of layers to cores (kept apart from the memory rules, as sinabs keeps ``mapping.py`` apart from
``LayerConstraints.fits``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from slamp_deploy.chips.family import (
    Family,
    FitContext,
    Rule,
    conv2d_layers,
    layer_kinds,
    limit,
    not_checked,
    register_family,
    section_of,
    yes_no,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile, field_error
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.geometry import LayerGeometry, conv_params

__all__ = ["Speck", "SpeckRules", "speck_memory"]

_SHAPE_REMEDY = "pruning does not help; change the layer's shape"
# The square-kernel rule and the per-core memory placements are read from sinabs (the profile's
# SINABS source: backend/dynapcnn chips/dynapcnn.py get_constraints and mapping.py
# LayerConstraints.fits, which take one kernel side and compare per-core memory words): vendor
# code (V-code), as tests/golden/fit/speck.json pins.
_SINABS_CONFIDENCE = "V-code"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeckRules:
    """DYNAP-CNN / Speck per-core memories and layer shape rules (sinabs mapper)."""

    kernel_memory_words: Figure = field(
        metadata={"unit": "word", "kind": "int_list"}
    )  # one entry per core
    neuron_memory_words: Figure = field(
        metadata={"unit": "word", "kind": "int_list"}
    )  # one entry per core
    bias_memory_words: Figure = field(metadata={"unit": "word", "kind": "count"})
    destinations_max: Figure = field(metadata={"unit": "core", "kind": "count"})
    out_channels_max: Figure = field(metadata={"unit": "channel", "kind": "count"})
    kernel_size_max: Figure = field(metadata={"unit": "tap", "kind": "count"})
    strides: Figure = field(metadata={"unit": "", "kind": "int_list"})
    padding_max: Figure = field(metadata={"unit": "pixel", "kind": "count"})
    input_size_max: Figure = field(metadata={"unit": "pixel", "kind": "count"})
    output_size_max: Figure = field(metadata={"unit": "pixel", "kind": "count"})



def _speck(ctx: FitContext) -> SpeckRules:
    rules: SpeckRules = section_of(ctx.profile, Speck)
    return rules


def _words(fig: Figure) -> list[int]:
    assert isinstance(fig.value, tuple)  # int_list, validated on load
    return [int(x) for x in fig.value]


def _clog2(x: int) -> int:
    return max(int(x) - 1, 0).bit_length()


def speck_memory(lay: LayerGeometry) -> tuple[int, int]:
    """(kernel, neuron) memory words of one layer, with sinabs' power-of-two rounding.

    ``kernel = c * 2**(ceil(log2(kh*kw)) + ceil(log2(f)))`` and
    ``neuron = f * 2**(ceil(log2(out_h)) + ceil(log2(out_w)))`` (conv output, before pooling).
    A linear layer counts as a 1x1 convolution over ``F`` input channels.
    """
    if lay.kind == "linear":
        c, f = lay.in_shape[0], lay.out_shape[0]
        return c * 2 ** _clog2(f), f
    c, f = lay.in_shape[0], lay.out_shape[0]
    k = int(np.prod(lay.mask.shape[2:]))
    kernel = c * 2 ** (_clog2(k) + _clog2(f))
    neuron = f * 2 ** sum(_clog2(x) for x in lay.out_shape[1:])
    return kernel, neuron


def _match(fits: list[list[int]], n_cores: int) -> list[int] | None:
    """Assign each layer a distinct core it fits (augmenting paths); None if impossible."""
    owner = [-1] * n_cores

    def augment(i: int, seen: list[bool]) -> bool:
        for c in fits[i]:
            if not seen[c]:
                seen[c] = True
                if owner[c] < 0 or augment(owner[c], seen):
                    owner[c] = i
                    return True
        return False

    for i in range(len(fits)):
        if not augment(i, [False] * n_cores):
            return None
    assign = [-1] * len(fits)
    for c, i in enumerate(owner):
        if i >= 0:
            assign[i] = c
    return assign


# ---- rules, in the order a layer's results are reported


def out_channels_max(ctx: FitContext) -> Iterable[RuleResult]:
    sp = _speck(ctx)
    for lay in ctx.layers:
        yield limit(sp.out_channels_max, "speck.out_channels_max", lay.name, lay.out_shape[0],
                    relievable=False, remedy="split the layer's output channels; " + _SHAPE_REMEDY)


def square_kernel(ctx: FitContext) -> Iterable[RuleResult]:
    for lay in conv2d_layers(ctx):
        ks = lay.mask.shape[2:]
        yield yes_no("speck.square_kernel", lay.name, ks[0] == ks[1], value=int(ks[1]),
                     limit=int(ks[0]), confidence=_SINABS_CONFIDENCE, reason="use a square kernel")


def kernel_size_and_padding(ctx: FitContext) -> Iterable[RuleResult]:
    sp = _speck(ctx)
    for lay in conv2d_layers(ctx):
        _s, p, _dl = conv_params(lay)
        yield limit(sp.kernel_size_max, "speck.kernel_size_max", lay.name,
                    max(lay.mask.shape[2:]), relievable=False, remedy="use a smaller kernel")
        yield limit(sp.padding_max, "speck.padding_max", lay.name, max(p), relievable=False,
                    remedy="reduce the padding")


def strides(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _speck(ctx).strides
    for lay in conv2d_layers(ctx):
        s, _p, _dl = conv_params(lay)
        ok = isinstance(fig.value, tuple) and all(x in fig.value for x in s)
        yield yes_no("speck.strides", lay.name, ok, value=max(s), limit=max(s),
                     confidence=fig.confidence, reason=f"stride {s} must be one of {fig.value}")


def dilation_groups(ctx: FitContext) -> Iterable[RuleResult]:
    for lay in conv2d_layers(ctx):
        _s, _p, dl = conv_params(lay)
        if max(dl) > 1 or lay.groups > 1:
            yield not_checked("speck.dilation_groups", lay.name,
                              "dilated or grouped convolution support unknown")


def map_sizes(ctx: FitContext) -> Iterable[RuleResult]:
    sp = _speck(ctx)
    for lay in conv2d_layers(ctx):
        yield limit(sp.input_size_max, "speck.input_size_max", lay.name, max(lay.in_shape[1:]),
                    relievable=False, remedy="downsample the input")
        yield limit(sp.output_size_max, "speck.output_size_max", lay.name,
                    max(lay.out_shape[1:]), relievable=False,
                    remedy="use a larger stride or downsample before this layer")


def memories(ctx: FitContext) -> Iterable[RuleResult]:
    """Each layer's kernel and neuron memory fit the largest core's (placement: ``mapping``)."""
    sp = _speck(ctx)
    for lay in ctx.layers:
        kernel, neuron = speck_memory(lay)
        for what, used, fig, hint in (
            ("kernel", kernel, sp.kernel_memory_words, "fewer channels or a smaller kernel"),
            ("neuron", neuron, sp.neuron_memory_words, "fewer channels or a smaller output map"),
        ):
            most = max(_words(fig))
            yield yes_no(f"speck.{what}_memory", lay.name, used <= most, value=used, limit=most,
                         comparison="<=", confidence=fig.confidence,
                         reason=f"{what} memory depends only on shapes; {_SHAPE_REMEDY} ({hint})")


def destinations_max(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _speck(ctx).destinations_max
    for lay in ctx.layers:
        n_dest = sum(1 for s in ctx.sources if s == lay.name)
        yield limit(fig, "speck.destinations_max", lay.name, n_dest, relievable=False,
                    remedy="merge or chain the consumers of this layer")


def layer_per_core(ctx: FitContext) -> Iterable[RuleResult]:
    """Records the mapping: every layer takes one core of its own."""
    for lay in ctx.layers:
        ctx.cores[lay.name] = 1
        ctx.cores_by_rule[lay.name] = [("speck.layer_per_core", 1)]
    return ()


def mapping(ctx: FitContext) -> Iterable[RuleResult]:
    """A one-to-one assignment of layers to cores whose memories hold them."""
    sp = _speck(ctx)
    km, nm = _words(sp.kernel_memory_words), _words(sp.neuron_memory_words)
    n = len(ctx.layers)
    fits = []
    for lay in ctx.layers:
        kernel, neuron = speck_memory(lay)
        fits.append([c for c in range(len(km)) if kernel <= km[c] and neuron <= nm[c]])
    assign = _match(fits, len(km)) if n <= len(km) else None
    ok = assign is not None
    yield yes_no("speck.mapping", None, ok, value=n if ok else n + 1 if n <= len(km) else n,
                 limit=len(km), comparison="<=", confidence=sp.kernel_memory_words.confidence,
                 reason="no one-to-one assignment of layers to cores satisfies the kernel "
                 "and neuron memories; " + _SHAPE_REMEDY)
    for lay, c in zip(ctx.layers, assign or (), strict=False):
        kernel, neuron = speck_memory(lay)
        yield RuleResult(rule=f"speck.core{c}.kernel_memory", layer=lay.name, status="ok",
                         value=kernel, limit=km[c], confidence=_SINABS_CONFIDENCE)
        yield RuleResult(rule=f"speck.core{c}.neuron_memory", layer=lay.name, status="ok",
                         value=neuron, limit=nm[c], confidence=_SINABS_CONFIDENCE)


@register_family
class Speck(Family):
    """SynSense Speck / DYNAP-CNN: layer-per-core, shape-only memories."""

    name = "speck"
    section = ("speck", SpeckRules)
    rule_words: ClassVar[Mapping[str, str]] = {
        "speck.kernel_memory": "kernel memory words",
        "speck.neuron_memory": "neuron memory words",
        "speck.mapping": "layers to place",
    }
    rules: ClassVar[tuple[Rule, ...]] = (
        layer_kinds, out_channels_max, square_kernel, kernel_size_and_padding, strides,
        dilation_groups, map_sizes, memories, destinations_max, layer_per_core, mapping,
    )

    def cross_check(self, profile: HardwareProfile, fname: str) -> None:
        """One memory entry per core, for both memories and in ``chip.cores``."""
        sp: SpeckRules = section_of(profile, Speck)
        km, nm = sp.kernel_memory_words.value, sp.neuron_memory_words.value
        if isinstance(km, tuple) and isinstance(nm, tuple) and len(km) != len(nm):
            raise field_error(
                fname,
                "speck.neuron_memory_words.value",
                list(nm),
                f"must have one entry per core, like speck.kernel_memory_words ({len(km)})",
            )
        cores = profile.chip.cores.value
        if isinstance(km, tuple) and isinstance(cores, int) and len(km) != cores:
            raise field_error(
                fname,
                "chip.cores.value",
                cores,
                f"must equal the number of entries of speck.kernel_memory_words ({len(km)})",
            )
