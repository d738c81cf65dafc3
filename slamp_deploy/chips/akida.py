"""The Akida family (``[akida]``): Akida 1.0's layer rules from BrainChip's user guide
(fully connected inputs, convolution kernels, strides, channels and input size). Core
allocation is not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from slamp_deploy.chips.family import (
    Family,
    FitContext,
    Rule,
    conv2d_layers,
    fan_in,
    layer_kinds,
    limit,
    register_family,
    section_of,
    yes_no,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.geometry import conv_params

__all__ = ["Akida", "AkidaRules"]

# BrainChip's Akida 1.0 capabilities page (Brainchip-Inc/akida_examples @ 2e9b1a4ed8e8,
# user_guide/hardware/1.0.html, the profile's AK1 source) says convolutions take "stride 1 or 2
# (2 only with 3x3)" and lists no dilated or grouped convolution; both verbatim there (V).
_STRIDE2_KERNEL = (3, 3)
_AK1_CONFIDENCE = "V"


@dataclass(frozen=True, slots=True, kw_only=True)
class AkidaRules:
    """Akida 1.0 layer rules (BrainChip user guide)."""

    fc_inputs_max: Figure = field(metadata={"unit": "input", "kind": "count"})
    conv_channels_max: Figure = field(metadata={"unit": "channel", "kind": "count"})
    conv_input_size_max: Figure = field(metadata={"unit": "pixel", "kind": "count"})
    conv_kernel_sizes: Figure = field(metadata={"unit": "tap", "kind": "int_list"})
    conv_strides: Figure = field(metadata={"unit": "", "kind": "int_list"})


def _akida(ctx: FitContext) -> AkidaRules:
    rules: AkidaRules = section_of(ctx.profile, Akida)
    return rules


def fc_inputs_max(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _akida(ctx).fc_inputs_max
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        if lay.kind == "linear":
            yield limit(fig, "akida.fc_inputs_max", lay.name, st.n_in, relievable=False,
                        remedy="reduce the flattened input size")


def conv_kernel_sizes(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _akida(ctx).conv_kernel_sizes
    for lay in conv2d_layers(ctx):
        ks = lay.mask.shape[2:]
        ok = ks[0] == ks[1] and isinstance(fig.value, tuple) and ks[0] in fig.value
        yield yes_no("akida.conv_kernel_sizes", lay.name, ok, value=int(max(ks)),
                     limit=int(max(ks)), confidence=fig.confidence,
                     reason=f"kernel {ks} must be square with size in {fig.value}")


def conv_strides(ctx: FitContext) -> Iterable[RuleResult]:
    """Strides among ``conv_strides``, and above 1 only with a 3x3 kernel (AK1)."""
    fig = _akida(ctx).conv_strides
    for lay in conv2d_layers(ctx):
        ks = lay.mask.shape[2:]
        s, _p, _dl = conv_params(lay)
        ok = (
            isinstance(fig.value, tuple)
            and all(x in fig.value for x in s)
            and (max(s) == 1 or tuple(ks) == _STRIDE2_KERNEL)
        )
        yield yes_no("akida.conv_strides", lay.name, ok, value=max(s), limit=max(s),
                     confidence=fig.confidence,
                     reason=f"stride {s} must be 1, or 2 with a 3x3 kernel")


def no_dilation_or_groups(ctx: FitContext) -> Iterable[RuleResult]:
    for lay in conv2d_layers(ctx):
        _s, _p, dl = conv_params(lay)
        ok = max(dl) == 1 and lay.groups == 1
        yield yes_no("akida.no_dilation_or_groups", lay.name, ok, value=int(ok), limit=1,
                     confidence=_AK1_CONFIDENCE,
                     reason="Akida 1.0 has no dilated or grouped convolution")


def conv_channels_max(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _akida(ctx).conv_channels_max
    for lay in conv2d_layers(ctx):
        yield limit(fig, "akida.conv_channels_max", lay.name, lay.in_shape[0],
                    relievable=False, remedy="reduce the channels")


def conv_input_size_max(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _akida(ctx).conv_input_size_max
    for lay in conv2d_layers(ctx):
        yield limit(fig, "akida.conv_input_size_max", lay.name, max(lay.in_shape[1:]),
                    relievable=False, remedy="downsample the input")


@register_family
class Akida(Family):
    """BrainChip Akida 1.0: per-layer shape rules; core allocation not modelled."""

    name = "akida"
    section = ("akida", AkidaRules)
    models_cores = False
    rule_words: ClassVar[Mapping[str, str]] = {"akida.fc_inputs_max": "fully connected inputs"}
    rules: ClassVar[tuple[Rule, ...]] = (
        layer_kinds, fan_in, fc_inputs_max, conv_kernel_sizes, conv_strides,
        no_dilation_or_groups, conv_channels_max, conv_input_size_max,
    )
