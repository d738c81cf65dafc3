"""The Xylo family (``[xylo]``): rockpool's design rules as small named functions, each
checking one rule over the network (hidden and output neuron layers, input and output
projections, the recurrent weight budget); the network is placed on one Xylo core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from slamp_deploy.chips.family import (
    REMEDY,
    Family,
    FitContext,
    Rule,
    layer_kinds,
    limit,
    register_family,
    section_of,
    yes_no,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.verdict import RuleResult

__all__ = ["Xylo", "XyloRules"]

# Rockpool's xylo DRC (synsense/rockpool @ 42cee1c96422, the profiles' ROCKPOOL source,
# devices/xylo/syns61300/xylo_mapper.py, reused by syns61201 and syns63300):
# `at_least_two_neuron_layers_needed` raises "At least two layers of neurons are required to map
# to hidden and output layers on Xylo"; `output_nodes_have_neurons_as_source` and
# `no_consecutive_weights` require a neuron layer after every weight layer. Both are code there.
_MIN_NEURON_LAYERS = 2
_DRC_CONFIDENCE = "V-code"


@dataclass(frozen=True, slots=True, kw_only=True)
class XyloRules:
    """Xylo family design rules (rockpool ``xylo_mapper`` DRC and family table).

    The per-hidden-neuron fan-out limit is ``neuron.fan_out_max``.
    """

    input_channels_max: Figure = field(metadata={"unit": "channel", "kind": "count"})
    hidden_neurons_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    output_neurons_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    recurrent_weights_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})
    input_projection_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    output_projection_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})



def _xylo(ctx: FitContext) -> XyloRules:
    rules: XyloRules = section_of(ctx.profile, Xylo)
    return rules


def input_channels_max(ctx: FitContext) -> Iterable[RuleResult]:
    yield limit(_xylo(ctx).input_channels_max, "xylo.input_channels_max", ctx.layers[0].name,
                ctx.stats[0].n_in, relievable=False,
                remedy="reduce the input channels (e.g. a filter bank with fewer bands)")


def at_least_two_neuron_layers(ctx: FitContext) -> Iterable[RuleResult]:
    n = len(ctx.layers)
    yield yes_no("xylo.depth", None, n >= _MIN_NEURON_LAYERS, value=n, limit=_MIN_NEURON_LAYERS,
                 comparison=">=", confidence=_DRC_CONFIDENCE,
                 reason="add a hidden layer: Xylo needs hidden and output neuron layers")


def hidden_neurons_max(ctx: FitContext) -> Iterable[RuleResult]:
    hidden = sum(st.n_out for st in ctx.stats[:-1])
    yield limit(_xylo(ctx).hidden_neurons_max, "xylo.hidden_neurons_max", None, hidden,
                relievable=False, remedy="reduce the hidden layer widths")


def output_neurons_max(ctx: FitContext) -> Iterable[RuleResult]:
    yield limit(_xylo(ctx).output_neurons_max, "xylo.output_neurons_max", ctx.layers[-1].name,
                ctx.stats[-1].n_out, relievable=False, remedy="reduce the output classes")


def weights_feed_neurons(ctx: FitContext) -> Iterable[RuleResult]:
    last = len(ctx.layers) - 1
    for i, lay in enumerate(ctx.layers):
        has = bool(lay.neuron_shape)
        rule = "xylo.outputs_from_neurons" if i == last else "xylo.weights_feed_neurons"
        yield yes_no(rule, lay.name, has, value=int(has), limit=1, confidence=_DRC_CONFIDENCE,
                     reason="put a spiking neuron layer after this weight layer")


def hidden_fan_out(ctx: FitContext) -> Iterable[RuleResult]:
    """The per-hidden-neuron fan-out limit (``neuron.fan_out_max``) on the hidden layers."""
    fig = ctx.profile.neuron.fan_out_max
    for lay, st in zip(ctx.layers[1:-1], ctx.stats[1:-1], strict=True):
        yield limit(fig, "neuron.fan_out_max", lay.name, int(st.fan_out.max(initial=0)),
                    relievable=True, remedy=REMEDY["neuron.fan_out_max"])


def recurrent_weights_max(ctx: FitContext) -> Iterable[RuleResult]:
    rec = sum(st.kept_weights for st in ctx.stats[1:-1])
    yield limit(_xylo(ctx).recurrent_weights_max, "xylo.recurrent_weights_max", None, rec,
                relievable=True,
                remedy="prune the hidden-to-hidden weights further (find_fit_keep / --fit)")


def input_projection_max(ctx: FitContext) -> Iterable[RuleResult]:
    yield limit(_xylo(ctx).input_projection_max, "xylo.input_projection_max",
                ctx.layers[0].name, int((ctx.stats[0].fan_in > 0).sum()), relievable=True,
                remedy="prune every input weight of some first-layer neurons")


def output_projection_max(ctx: FitContext) -> Iterable[RuleResult]:
    yield limit(_xylo(ctx).output_projection_max, "xylo.output_projection_max",
                ctx.layers[-1].name, int((ctx.stats[-1].fan_out > 0).sum()), relievable=True,
                remedy="prune every output weight of some hidden neurons")


def one_core(ctx: FitContext) -> Iterable[RuleResult]:
    """Records the placement: the whole network on one Xylo core."""
    ctx.network_cores = 1
    return ()


@register_family
class Xylo(Family):
    """SynSense Xylo (Audio 2, Audio 3, IMU): one core, rockpool's design rules."""

    name = "xylo"
    section = ("xylo", XyloRules)
    rule_words: ClassVar[Mapping[str, str]] = {
        "xylo.input_channels_max": "input channels",
        "xylo.hidden_neurons_max": "hidden neurons",
        "xylo.output_neurons_max": "output neurons",
        "xylo.recurrent_weights_max": "recurrent weights",
        "xylo.input_projection_max": "neurons fed by the inputs",
        "xylo.output_projection_max": "neurons feeding the outputs",
    }
    rules: ClassVar[tuple[Rule, ...]] = (
        input_channels_max, at_least_two_neuron_layers, hidden_neurons_max, output_neurons_max,
        weights_feed_neurons, hidden_fan_out, recurrent_weights_max, input_projection_max,
        output_projection_max, one_core,
    )

    def check(self, ctx: FitContext) -> None:
        ctx.add_all(layer_kinds(ctx))
        if ctx.layers:  # an empty network has nothing to place
            super().check(ctx)
