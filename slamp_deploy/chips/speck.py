"""The Speck / DYNAP-CNN family (``[speck]``): one layer per core, the per-core kernel and neuron
memories with sinabs' power-of-two rounding, the layer shape rules, the neuron and pooling
rules, and the one-to-one matching of layers to cores (kept apart from the memory rules, as
sinabs keeps ``mapping.py`` apart from ``LayerConstraints.fits``).

Each rule follows sinabs 3.1.3 (``sinabs/backend/dynapcnn/``, the profile's SINABS source):

* a ``Linear`` after a ``Flatten`` is the convolution ``convert_linear_to_conv`` builds
  (``dynapcnn_layer.py`` l.17-52: ``kernel_size=(in_h, in_w)``, ``in_channels=in_chan``,
  padding 0, stride 1), so its memory is ``memory_summary``'s (``dynapcnn_layer.py`` l.213-244:
  ``kernel = c * 2**(ceil(log2(h*w)) + ceil(log2(f)))``, ``neuron = f * 2**(ceil(log2(oh)) +
  ceil(log2(ow)))``) with ``h, w`` the flattened map, and the square-kernel check
  (l.111-115), the kernel-size, stride, padding and input-size rules apply to it too;
* neurons are integrate-and-fire: ``DynapcnnLayer`` takes only ``IAFSqueeze`` (l.92-96) and the
  graph extractor refuses LIF layers ("Leaky Integrate-and-Fire dynamics are not supported by
  DynapCNN", ``nir_graph_extractor.py`` l.393-405); an snnTorch ``Leaky`` with beta = 1 is IF;
* every weight layer is followed by spiking neurons and pooling follows the neurons
  (``connectivity_specs.py`` l.20-36: weight-neuron, neuron-pooling, pooling-weight edges only);
* pooling is sum pooling (``AvgPool2d`` is rescaled to it, ``MaxPool`` is refused:
  ``dynapcnn_layer_utils.py`` l.207-222), stride equal to the kernel (l.209-214), square
  (``dynapcnn_layer.py`` l.118-120), of size 1, 2 or 4 (docs ``speck/overview.md``);
* layers are matched one-to-one onto cores whose memories hold them (``mapping.py`` l.19-85,
  ``get_valid_mapping``; the per-core memories from ``chips/dynapcnn.py`` l.299-330).
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

__all__ = ["ConvView", "Speck", "SpeckRules", "conv_view", "speck_memory"]

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
    pool_sizes: Figure = field(metadata={"unit": "pixel", "kind": "int_list"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvView:
    """A layer as the convolution sinabs maps (a Linear becomes one: see the module docstring)."""

    c: int
    f: int
    kernel: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    converted: bool  # a Linear after a Flatten, turned into a (h, w) kernel


def conv_view(lay: LayerGeometry) -> ConvView:
    """The convolution sinabs maps for ``lay`` (``convert_linear_to_conv`` for a Linear)."""
    if lay.kind == "linear":
        flat = lay.traits.flat_from if lay.traits is not None else ()
        if len(flat) == 3:
            c, h, w = flat
            return ConvView(c=c, f=lay.out_shape[0], kernel=(h, w), in_hw=(h, w), out_hw=(1, 1),
                            stride=(1, 1), padding=(0, 0), converted=True)
        return ConvView(c=lay.in_shape[0], f=lay.out_shape[0], kernel=(1, 1), in_hw=(1, 1),
                        out_hw=(1, 1), stride=(1, 1), padding=(0, 0), converted=False)
    s, p, _dl = conv_params(lay)
    kh, kw = (int(x) for x in lay.mask.shape[2:])
    return ConvView(c=lay.in_shape[0], f=lay.out_shape[0], kernel=(kh, kw),
                    in_hw=(lay.in_shape[1], lay.in_shape[2]),
                    out_hw=(lay.out_shape[1], lay.out_shape[2]), stride=s, padding=p,
                    converted=False)


def _shaped(ctx: FitContext) -> list[tuple[LayerGeometry, ConvView]]:
    """The layers the convolution shape rules apply to: 2-D convolutions and converted Linears."""
    out = []
    for lay in ctx.layers:
        if lay.kind == "conv2d" or lay.kind == "linear":
            v = conv_view(lay)
            if lay.kind == "conv2d" or v.converted:
                out.append((lay, v))
    return out


def _as_conv(v: ConvView) -> str:
    return (f" (sinabs converts this Linear after a Flatten into a Conv2d with kernel "
            f"{v.kernel[0]}x{v.kernel[1]} over {v.c} channels)") if v.converted else ""



def _speck(ctx: FitContext) -> SpeckRules:
    rules: SpeckRules = section_of(ctx.profile, Speck)
    return rules


def _words(fig: Figure) -> list[int]:
    assert isinstance(fig.value, tuple)  # int_list, validated on load
    return [int(x) for x in fig.value]


def _clog2(x: int) -> int:
    return max(int(x) - 1, 0).bit_length()


def speck_memory(lay: LayerGeometry) -> tuple[int, int]:
    """(kernel, neuron) memory words of one layer, with sinabs' power-of-two rounding
    (``DynapcnnLayer.memory_summary``, sinabs 3.1.3 ``dynapcnn_layer.py`` l.239-244):

    ``kernel = c * 2**(ceil(log2(kh*kw)) + ceil(log2(f)))`` and
    ``neuron = f * 2**(ceil(log2(out_h)) + ceil(log2(out_w)))`` (conv output, before pooling).
    A Linear after a Flatten of ``(C, H, W)`` is a ``H x W`` kernel over ``C`` channels with a
    1x1 output; any other Linear a 1x1 convolution over its ``F`` inputs.
    """
    v = conv_view(lay)
    kernel = v.c * 2 ** (_clog2(v.kernel[0] * v.kernel[1]) + _clog2(v.f))
    neuron = v.f * 2 ** sum(_clog2(x) for x in v.out_hw)
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
    for lay, v in _shaped(ctx):
        kh, kw = v.kernel
        yield yes_no("speck.square_kernel", lay.name, kh == kw, value=kw, limit=kh,
                     confidence=_SINABS_CONFIDENCE,
                     reason=f"kernel {kh}x{kw} is not square{_as_conv(v)}; use a square kernel"
                     + ("; pool or crop the map before the Flatten to a square" if v.converted
                        else ""))


def kernel_size_and_padding(ctx: FitContext) -> Iterable[RuleResult]:
    sp = _speck(ctx)
    for lay, v in _shaped(ctx):
        yield limit(sp.kernel_size_max, "speck.kernel_size_max", lay.name, max(v.kernel),
                    relievable=False, remedy="use a smaller kernel" + (
                        "; pool the map before the Flatten" + _as_conv(v) if v.converted
                        else ""))
        yield limit(sp.padding_max, "speck.padding_max", lay.name, max(v.padding),
                    relievable=False, remedy="reduce the padding")


def strides(ctx: FitContext) -> Iterable[RuleResult]:
    fig = _speck(ctx).strides
    for lay, v in _shaped(ctx):
        ok = isinstance(fig.value, tuple) and all(x in fig.value for x in v.stride)
        yield yes_no("speck.strides", lay.name, ok, value=max(v.stride), limit=max(v.stride),
                     confidence=fig.confidence,
                     reason=f"stride {v.stride} must be one of {fig.value}")


def dilation_groups(ctx: FitContext) -> Iterable[RuleResult]:
    for lay in conv2d_layers(ctx):
        _s, _p, dl = conv_params(lay)
        if max(dl) > 1 or lay.groups > 1:
            yield not_checked("speck.dilation_groups", lay.name,
                              "dilated or grouped convolution support unknown")


def map_sizes(ctx: FitContext) -> Iterable[RuleResult]:
    sp = _speck(ctx)
    for lay, v in _shaped(ctx):
        yield limit(sp.input_size_max, "speck.input_size_max", lay.name, max(v.in_hw),
                    relievable=False, remedy="downsample the input")
        yield limit(sp.output_size_max, "speck.output_size_max", lay.name, max(v.out_hw),
                    relievable=False, remedy="use a larger stride or downsample before this layer")


def neuron_model(ctx: FitContext) -> Iterable[RuleResult]:
    """Integrate-and-fire only (sinabs takes ``IAFSqueeze`` and refuses LIF layers), and every
    weight layer drives spiking neurons (``connectivity_specs.py``: weight-neuron edges)."""
    for lay in ctx.layers:
        t = lay.traits
        if t is None:
            yield not_checked("speck.neuron_model", lay.name,
                              "no neuron parameters: the geometry was built without a model")
            continue
        has = t.neuron is not None
        yield yes_no("speck.weights_feed_neurons", lay.name, has, value=int(has), limit=1,
                     confidence=_SINABS_CONFIDENCE,
                     reason="every weight layer must drive spiking neurons on Speck (sinabs "
                     "connectivity_specs: weight -> IAF); add an snn.Leaky(beta=1.0) after it")
        if t.neuron is None:
            continue
        leaky = [b for b in t.neuron.betas if b != 1.0]
        ok = t.neuron.kind == "leaky" and not leaky
        what = ("snn.Synaptic neurons (a synaptic current) are not integrate-and-fire"
                if t.neuron.kind != "leaky" else f"beta = {leaky[0]:.6g} is leaky" if leaky
                else "")
        yield yes_no("speck.neuron_model", lay.name, ok, value=int(ok), limit=1,
                     confidence=_SINABS_CONFIDENCE,
                     reason=f"{what}; Speck neurons are integrate-and-fire (sinabs refuses LIF "
                     "layers): use snn.Leaky(beta=1.0) and retrain")


def pooling(ctx: FitContext) -> Iterable[RuleResult]:
    """Sum pooling after the neurons, square, stride = kernel, size in ``speck.pool_sizes``."""
    fig = _speck(ctx).pool_sizes
    sizes = tuple(int(x) for x in fig.value) if isinstance(fig.value, tuple) else ()
    for lay in ctx.layers:
        for pool in lay.traits.pools if lay.traits is not None else ():
            k, s = pool.kernel, pool.stride
            size = f"{'x'.join(map(str, k))}"
            why = (f"{pool.kind} is not supported: Speck pools by summing (use nn.AvgPool2d, "
                   "which sinabs turns into sum pooling)" if pool.kind != "avgpool"
                   else "the pooling before this layer's neurons pools currents; Speck pools "
                   "spikes after the neurons: move it after the snn.Leaky" if not pool.after_neurons
                   else f"pooling {size} is not square" if len(set(k)) != 1
                   else f"pooling stride {s} must equal its kernel {k}" if tuple(s) != tuple(k)
                   else f"pooling size {k[0]} must be one of {sizes}" if k[0] not in sizes
                   else "")
            yield yes_no("speck.pooling", lay.name, not why, value=max(k), limit=max(k),
                         confidence=fig.confidence, reason=why)


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
                         reason=f"{what} memory depends only on shapes{_as_conv(conv_view(lay))}; "
                         f"{_SHAPE_REMEDY} ({hint})")


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


def _mapping_numbers(ctx: FitContext, km: list[int], nm: list[int], fits: list[list[int]]
                     ) -> str:
    """The real numbers behind a failed matching: each layer's memories and the cores that hold
    them, and the cores' memories."""
    parts = []
    for lay, cores in zip(ctx.layers, fits, strict=True):
        kernel, neuron = speck_memory(lay)
        where = f"cores {','.join(map(str, cores))}" if cores else "no core"
        parts.append(f"{lay.name} kernel {kernel:,} / neuron {neuron:,} words -> {where}")
    cores = "; ".join(f"{c}: {k // 1024}Ki/{n // 1024}Ki" for c, (k, n) in
                      enumerate(zip(km, nm, strict=True)))
    return f"{'; '.join(parts)} (core kernel/neuron memories {cores})"


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
    why = (f"{n} layers for {len(km)} cores" if n > len(km) else
           "no one-to-one assignment of layers to cores holds every layer's kernel and neuron "
           f"memory: {_mapping_numbers(ctx, km, nm, fits)}")
    yield yes_no("speck.mapping", None, ok, value=n if ok else n + 1 if n <= len(km) else n,
                 limit=len(km), comparison="<=", confidence=sp.kernel_memory_words.confidence,
                 reason=f"{why}; {_SHAPE_REMEDY}")
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
    feed_forward = ("speck.feed_forward",
                    "DYNAP-CNN cores are feed-forward: sinabs maps no recurrent layer (its graph "
                    "extractor refuses cycles, nir_graph_extractor.py; docs: recurrence 'not "
                    "recommended or supported as it can result in deadlock'); unroll it or use "
                    "snn.Leaky(beta=1.0)")
    needs = ("kernel_memory_words", "neuron_memory_words", "strides", "pool_sizes")
    rules: ClassVar[tuple[Rule, ...]] = (
        layer_kinds, out_channels_max, square_kernel, kernel_size_and_padding, strides,
        dilation_groups, map_sizes, neuron_model, pooling, memories, destinations_max,
        layer_per_core, mapping,
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
