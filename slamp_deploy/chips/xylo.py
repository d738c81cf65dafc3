"""The Xylo family (``[xylo]``): rockpool's design rules as small named functions, each
checking one rule over the network (hidden and output neuron layers, input and output
projections and where they sit, the recurrent weight budget, biases, decays, reset); the
network is placed on one Xylo core.

The rules follow rockpool 3.1.0 (``rockpool/devices/xylo/``, the profiles' ROCKPOOL source):

* biases: ``weight_nodes_have_no_biases`` (``syns61201/xylo_mapper.py`` l.182-190, reused by
  the A3 and IMU mappers) warns "Bias parameters of LinearWeights modules are *not* transferred
  to Xylo": a non-zero bias is lost, so it is a violation here (``--fit`` drops them);
* time constants: ``Xylo2Neurons._convert_from`` (``syns61201/xylo_graph_modules.py`` l.63-72;
  the IMU's modules subclass it, ``syns63300/xylo_graph_modules.py`` l.12) raises when any
  ``tau <= dt`` and sets ``dash = log2(tau / dt)``; the A3 twin (``syns65302/
  xylo_graph_modules.py`` l.62-64) has no such check, and ``config_from_specification``
  (``syns65302/xylo_samna.py`` l.214-218) rounds dash to an integer, so ``tau <= dt`` becomes
  dash 0 there, a total decay. The hardware decays by a bit shift, ``v -= v >> dash``, so the
  decay that runs is ``1 - 2**-round(dash)``. snnTorch's beta maps to tau through rockpool's own
  ``beta = exp(-dt / tau)`` (``nn/modules/torch/lif_torch.py``): ``tau / dt = -1 / ln(beta)``,
  so ``tau > dt`` is ``beta > 1/e``;
* reset: Xylo's neurons "perform subtractive reset" (rockpool's Xylo-compatible neuron model,
  ``nn/modules/torch/lif_torch.py`` l.621-629 and l.708-709 ``vmem = vmem - spikes *
  self.threshold``; the mapper has no reset mode to set), so snnTorch's
  ``reset_mechanism="zero"``/``"none"`` does not map;
* expansion neurons: ``config_from_specification`` keeps ``weights_in[:, :128]`` and
  ``weights_out[-128:, :]`` with only a warning (``syns65302/xylo_samna.py`` l.237-249; IMU
  ``syns63300/xylo_samna.py`` likewise), and the mapper allocates the first hidden layer the
  lowest neuron ids and the layer read by the outputs the highest (``syns65302/xylo_mapper.py``
  l.155-205): a fed neuron past position 127 of the first hidden layer, or a read neuron before
  the last 128 of the last one, loses its weights. :func:`slamp_deploy.fit.placement` permutes
  hidden neurons so they sit there;
* outputs: the A3 DRC ``le_16_output_channels`` warns above 16 outputs (``syns65302/
  xylo_mapper.py`` l.53-60) while ``max_output_neurons`` is 32: reported as a warning.
"""

from __future__ import annotations

import math
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
    not_checked,
    register_family,
    section_of,
    yes_no,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.verdict import RuleResult

__all__ = ["Xylo", "XyloRules", "xylo_dash", "xylo_decay"]

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
    output_neurons_warn: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    tau_le_dt: Figure = field(metadata={"unit": "", "kind": "str"})  # "refused" | "total_decay"


def xylo_dash(beta: float) -> int | None:
    """The integer bit-shift decay rockpool writes for an snnTorch ``beta`` (``None``: no decay,
    beta = 1, which no finite shift gives): ``round(log2(tau/dt))`` with
    ``tau/dt = -1/ln(beta)``; 0 (total decay) where ``tau <= dt``."""
    if beta >= 1.0:
        return None
    if beta <= 0.0:
        return 0
    return max(round(math.log2(-1.0 / math.log(beta))), 0)


def xylo_decay(dash: int | None) -> float:
    """The decay the chip runs for a shift: ``v -= v >> dash`` is ``v * (1 - 2**-dash)``."""
    return 1.0 if dash is None else 1.0 - 2.0 ** -dash



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


def _traits_missing(ctx: FitContext, rule: str) -> list[RuleResult]:
    return [not_checked(rule, lay.name, "no layer traits: the geometry was built without a model")
            for lay in ctx.layers if lay.traits is None]


def biases(ctx: FitContext) -> Iterable[RuleResult]:
    """Non-zero biases are lost (rockpool ``weight_nodes_have_no_biases``)."""
    yield from _traits_missing(ctx, "xylo.biases")
    for lay in ctx.layers:
        if lay.traits is None:
            continue
        ok = lay.traits.bias != "nonzero"
        yield yes_no("xylo.biases", lay.name, ok, value=int(ok), limit=1,
                     confidence=_DRC_CONFIDENCE,
                     reason="biases are not supported on Xylo (rockpool's mapper drops them): "
                     "--fit drops them and retrains; or build the layer with bias=False")


def _decays(lay_betas: Iterable[float]) -> list[tuple[float, int | None, float]]:
    return [(b, d, xylo_decay(d)) for b in lay_betas for d in (xylo_dash(b),)]


def decays(ctx: FitContext) -> Iterable[RuleResult]:
    """Every time constant exceeds dt (A2, IMU refuse; A3 rounds to a total decay), and the
    bit-shift decay the chip runs differs from beta by less than 1e-6 (else a warning)."""
    refuse = _xylo(ctx).tau_le_dt.value == "refused"
    for lay in ctx.layers:
        neuron = lay.traits.neuron if lay.traits is not None else None
        if neuron is None:
            continue  # no traits: biases said so; no neurons: weights_feed_neurons does
        values = _decays((*neuron.betas, *neuron.alphas))
        short = [b for b, _d, _q in values if b <= math.exp(-1.0)]
        if short:
            b = short[0]
            reason = (f"decay {b:.6g} <= 1/e means tau <= dt (tau/dt = -1/ln(beta)), which "
                      "rockpool refuses: use beta > 0.368 and retrain" if refuse else
                      f"decay {b:.6g} <= 1/e means tau <= dt, which the chip runs as a total "
                      "decay (dash 0): use beta > 0.368 and retrain")
            yield RuleResult(rule="xylo.tau_gt_dt", layer=lay.name,
                             status="violated" if refuse else "warning", value=0, limit=1,
                             comparison="==", confidence=_DRC_CONFIDENCE, reason=reason)
        else:
            yield yes_no("xylo.tau_gt_dt", lay.name, True, value=1, limit=1,
                         confidence=_DRC_CONFIDENCE, reason="")
        off = [(b, d, q) for b, d, q in values if b > math.exp(-1.0) and abs(b - q) > 1e-6]
        if off:
            b, d, q = max(off, key=lambda x: abs(x[0] - x[2]))
            shift = "no shift gives no decay" if d is None else f"dash {d}"
            yield RuleResult(rule="xylo.decay_quantisation", layer=lay.name, status="warning",
                             confidence=_DRC_CONFIDENCE,
                             reason=f"decays are bit shifts: beta {b:.6g} runs as {q:.6g} "
                             f"({shift}); use beta = 1 - 2**-k to run exactly")


def reset(ctx: FitContext) -> Iterable[RuleResult]:
    """Xylo resets by subtracting the threshold."""
    for lay in ctx.layers:
        neuron = lay.traits.neuron if lay.traits is not None else None
        if neuron is None:
            continue
        ok = neuron.reset_mechanism == "subtract"
        yield yes_no("xylo.reset", lay.name, ok, value=int(ok), limit=1,
                     confidence=_DRC_CONFIDENCE,
                     reason=f"reset_mechanism = {neuron.reset_mechanism!r}: Xylo resets by "
                     "subtraction; use reset_mechanism='subtract' and retrain")


def input_positions(ctx: FitContext) -> Iterable[RuleResult]:
    """Fed neurons sit in the first ``input_projection_max`` of the first hidden layer."""
    fed = (ctx.stats[0].fan_in > 0).nonzero()[0]
    bound = _xylo(ctx).input_projection_max.as_int()
    if bound is not None and fed.size > bound:
        return  # too many fed neurons: xylo.input_projection_max says so, no order helps
    yield limit(_xylo(ctx).input_projection_max, "xylo.input_positions", ctx.layers[0].name,
                int(fed.max()) + 1 if fed.size else 0, relievable=True,
                remedy="rockpool keeps only the first {limit} input expansion neurons' weights; "
                "a permutation of the hidden neurons fixes it (run/--fit place fed neurons "
                "first, slamp_deploy.fit.placement)")


def output_positions(ctx: FitContext) -> Iterable[RuleResult]:
    """Neurons read by the outputs sit in the last ``output_projection_max`` of their layer."""
    read = (ctx.stats[-1].fan_out > 0).nonzero()[0]
    n = ctx.stats[-1].n_in
    bound = _xylo(ctx).output_projection_max.as_int()
    if bound is not None and read.size > bound:
        return  # too many read neurons: xylo.output_projection_max says so
    yield limit(_xylo(ctx).output_projection_max, "xylo.output_positions", ctx.layers[-1].name,
                n - int(read.min()) if read.size else 0, relievable=True,
                remedy="rockpool keeps only the last {limit} output expansion neurons' weights; "
                "a permutation of the hidden neurons fixes it (run/--fit place read neurons "
                "last, slamp_deploy.fit.placement)")


def output_warning(ctx: FitContext) -> Iterable[RuleResult]:
    """The mapper's DRC warns above ``output_neurons_warn`` outputs (A3: 16 of 32)."""
    fig = _xylo(ctx).output_neurons_warn
    n, bound = ctx.stats[-1].n_out, fig.as_int()
    most = _xylo(ctx).output_neurons_max.as_int()
    if bound is not None and n > bound and (most is None or n <= most):
        yield RuleResult(rule="xylo.output_neurons_warn", layer=ctx.layers[-1].name,
                         status="warning", value=n, limit=bound, confidence=fig.confidence,
                         reason=f"rockpool's DRC warns above {bound} output channels (the chip "
                         "holds more; the mapping proceeds)")


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
        "xylo.input_positions": "position of the last fed neuron",
        "xylo.output_positions": "positions from the first read neuron to the end",
    }
    needs = ("tau_le_dt",)
    rules: ClassVar[tuple[Rule, ...]] = (
        input_channels_max, at_least_two_neuron_layers, hidden_neurons_max, output_neurons_max,
        output_warning, weights_feed_neurons, hidden_fan_out, recurrent_weights_max,
        input_projection_max, output_projection_max, input_positions, output_positions, biases,
        decays, reset, one_core,
    )

    def check(self, ctx: FitContext) -> None:
        ctx.add_all(layer_kinds(ctx))
        if ctx.layers:  # an empty network has nothing to place
            super().check(ctx)
