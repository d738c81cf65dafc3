"""Will a (pruned or dense) network fit a chip? Named rules, exact counts, margins.

The pipeline describes each synaptic layer with a :class:`LayerGeometry` (shapes, conv geometry
and the boolean keep-mask); :func:`check_fit` maps the layers onto the chip's cores and checks
every rule the profile can quantify. Rules whose figure is unknown (or only ``U``) are reported as
``not_checked`` with the reason, never silently passed.

Counting conventions (exact, from the mask and the conv geometry):

* A *unit* is one output of the synaptic op (``out_shape``, flattened channel-major). Every unit
  is one on-chip neuron (compartment) that receives synapses.
* ``fan_in`` of a unit is the number of kept weights that reach it from inside the input (padding
  taps do not count). ``fan_out`` of an input unit is the number of (output position, output
  channel) pairs whose kept tap reads it. Both come from one correlation of the kept kernel with
  the valid-tap map, so ``sum(fan_in) == sum(fan_out) == kept synapses``.
* Core mapping (``loihi``, ``truenorth``, ``spinnaker`` mappers): each layer gets its own cores;
  its units are split into ``k`` contiguous, equal groups (``starts = arange(k) * n // k``), and
  ``k`` is the smallest count that satisfies every per-core rule. ``cores needed by each rule``
  is that minimum for each rule alone.
* Loihi 1 synapse memory follows NengoLoihi's ``SynapseConfig.bits_per_axon``: per input axon and
  core, kept synapses are stored in blocks of at most 64, each block costing
  ``ceil((n * (weight_bits + index_bits) + 10) / 64) * 64`` bits. Index bits are dropped (dense
  format) only for a linear-layer axon that reaches every unit of the core; every synapse is
  stored explicitly (no convolutional weight sharing), which is conservative for convolutions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slamp_deploy.chips.hardware import Figure, HardwareProfile
from slamp_deploy.errors import ConstraintViolation, ModelError

__all__ = [
    "FitReport",
    "LayerFit",
    "LayerGeometry",
    "RuleResult",
    "Violation",
    "check_fit",
    "core_starts",
    "layer_stats",
    "raise_if_not_fit",
    "speck_memory",
]

SCHEMA_VERSION = 1
INPUT = "@input"  # LayerGeometry.source value naming the network input
IDENTITY = "identity"  # LayerGeometry.kind of a one-to-one connection (identity shortcut)
_INCIDENCE_CELLS = 1 << 23  # per-core usage is computed this many (input, core) counts at a time
#: mappers whose rules read only the connectivity counts, so joined layers can be merged
_JOIN_MAPPERS = ("loihi", "truenorth", "spinnaker")


@dataclass(frozen=True)
class LayerGeometry:
    name: str  # module fully-qualified name, e.g. "features.0"
    kind: str  # "linear" | "conv1d" | "conv2d"
    in_shape: tuple[
        int, ...
    ]  # per-sample input shape of the synaptic op: (F,) or (C, L) or (C, H, W)
    out_shape: tuple[int, ...]  # per-sample output shape of the synaptic op
    mask: np.ndarray  # bool, same shape as the weight; True = kept
    neuron_shape: tuple[int, ...]  # shape of the spiking neuron layer this op feeds; () if none
    stride: tuple[int, ...] = ()  # conv only
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    weight_bits_hint: int | None = None
    # Name of the layer whose neurons feed this op; None = the previous layer in the sequence
    # (the network input for the first layer); "@input" = the network input explicitly.
    source: str | None = None
    # Name of the neuron population this op's current drives, where several ops drive one
    # (residual joins): such ops are mapped together, onto the cores of one set of neurons, and
    # their fan-ins add up. kind "identity" is a one-to-one connection of weight 1 (an identity
    # shortcut): mask (n,) all True, in_shape = out_shape = the population's shape.
    population: str | None = None


# --------------------------------------------------------------------------------------------
# Exact per-layer statistics


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LayerStats:
    """Exact connectivity counts of one layer under its mask."""

    n_out: int  # units (post-synaptic neurons)
    n_in: int  # input units
    kept_weights: int
    fan_in: np.ndarray  # (n_out,) int64
    fan_out: np.ndarray  # (n_in,) int64
    # (starts, stop) -> (n_in, len(starts)) kept synapses per group; group j is units
    # starts[j]..starts[j+1] (the last ends at ``stop``, default n_out), so the groups of a
    # mapping can be taken a chunk at a time
    incidence: Callable[..., np.ndarray]

    @property
    def synapses(self) -> int:
        return int(self.fan_in.sum())


def _validate(layer: LayerGeometry) -> None:
    """Shape checks; raises ModelError naming the layer."""
    where = f"layer {layer.name!r}"
    if layer.kind not in ("linear", "conv1d", "conv2d", IDENTITY):
        raise ModelError(f"{where}: kind = {layer.kind!r}: expected linear, conv1d, conv2d or "
                         f"{IDENTITY}")
    mask = layer.mask
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise ModelError(f"{where}: mask must be a numpy bool array")
    if layer.kind == IDENTITY:
        n = math.prod(layer.out_shape)
        if math.prod(layer.in_shape) != n or mask.shape != (n,):
            raise ModelError(f"{where}: an identity connection needs in_shape and out_shape of "
                             f"{n} units and a mask of shape ({n},); got {layer.in_shape}, "
                             f"{layer.out_shape}, {mask.shape}")
        return
    if layer.kind == "linear":
        if len(layer.in_shape) != 1 or len(layer.out_shape) != 1:
            raise ModelError(
                f"{where}: linear in_shape/out_shape must be (F,), got "
                f"{layer.in_shape} -> {layer.out_shape}"
            )
        if mask.shape != (layer.out_shape[0], layer.in_shape[0]):
            raise ModelError(
                f"{where}: mask shape {mask.shape} != (out, in) = "
                f"{(layer.out_shape[0], layer.in_shape[0])}"
            )
        return
    d = 1 if layer.kind == "conv1d" else 2
    if len(layer.in_shape) != d + 1 or len(layer.out_shape) != d + 1 or mask.ndim != d + 2:
        raise ModelError(
            f"{where}: {layer.kind} needs (C, *{d} spatial) shapes and a "
            f"{d + 2}-d mask; got {layer.in_shape}, {layer.out_shape}, {mask.shape}"
        )
    cin, cout, g = layer.in_shape[0], layer.out_shape[0], layer.groups
    if g < 1 or cin % g or cout % g or mask.shape[:2] != (cout, cin // g):
        raise ModelError(
            f"{where}: mask shape {mask.shape} does not match Cout={cout}, Cin/groups={cin}/{g}"
        )
    s, p, dl = _conv_params(layer)
    for i in range(d):
        k = mask.shape[2 + i]
        expect = (layer.in_shape[1 + i] + 2 * p[i] - dl[i] * (k - 1) - 1) // s[i] + 1
        if expect != layer.out_shape[1 + i]:
            raise ModelError(
                f"{where}: out_shape {layer.out_shape} does not follow from in_shape "
                f"{layer.in_shape}, kernel {mask.shape[2:]}, stride {s}, padding {p}, "
                f"dilation {dl} (expected spatial dim {i} = {expect})"
            )


def _conv_params(layer: LayerGeometry) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    d = len(layer.in_shape) - 1

    def norm(t: tuple[int, ...], default: int, what: str) -> tuple[int, ...]:
        if not t:
            return (default,) * d
        if len(t) == 1:
            return tuple(t) * d
        if len(t) != d:
            raise ModelError(f"layer {layer.name!r}: {what} {t} must have {d} entries")
        return tuple(int(x) for x in t)

    return (
        norm(layer.stride, 1, "stride"),
        norm(layer.padding, 0, "padding"),
        norm(layer.dilation, 1, "dilation"),
    )


def layer_stats(layer: LayerGeometry) -> LayerStats:
    """Exact fan-in, fan-out and per-core-group incidence of one layer."""
    _validate(layer)
    mask = layer.mask
    if layer.kind == IDENTITY:
        one = mask.astype(np.int64)

        def one_to_one(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
            out = np.zeros((one.size, len(starts)), dtype=np.int64)
            if len(starts):
                units = np.arange(int(starts[0]), one.size if stop is None else stop)
                core = np.searchsorted(starts, units, side="right") - 1
                out[units, core] = one[units]
            return out

        return LayerStats(n_out=one.size, n_in=one.size, kept_weights=int(one.sum()),
                          fan_in=one, fan_out=one.copy(), incidence=one_to_one)
    if layer.kind == "linear":
        m = mask.astype(np.int64)
        fan_in = m.sum(axis=1)
        fan_out = m.sum(axis=0)

        def incidence(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
            if not m.shape[0] or not len(starts):
                return np.zeros((m.shape[1], len(starts)), dtype=np.int64)
            rows = m[int(starts[0]) : m.shape[0] if stop is None else stop]
            return np.add.reduceat(rows, np.asarray(starts) - int(starts[0]), axis=0).T

        return LayerStats(
            n_out=m.shape[0],
            n_in=m.shape[1],
            kept_weights=int(m.sum()),
            fan_in=fan_in,
            fan_out=fan_out,
            incidence=incidence,
        )
    return _conv_stats(layer)


def _conv_stats(layer: LayerGeometry) -> LayerStats:
    mask = layer.mask
    s, p, dl = _conv_params(layer)
    d = len(layer.in_shape) - 1
    cin, cout, g = layer.in_shape[0], layer.out_shape[0], layer.groups
    cin_g, cout_g = cin // g, cout // g
    ksz, isz, osz = mask.shape[2:], layer.in_shape[1:], layer.out_shape[1:]
    # Per spatial dim: input index of (tap, output position), and whether it lies inside.
    grids = []
    for i in range(d):
        t = np.arange(ksz[i])[:, None]
        o = np.arange(osz[i])[None, :]
        grids.append(o * s[i] - p[i] + t * dl[i])  # (K_i, O_i)
    n_taps = int(np.prod(ksz))
    n_pos = int(np.prod(osz))
    n_ipos = int(np.prod(isz))
    # in_flat[t, o]: flat input position read by tap t at output position o, -1 when padding.
    if d == 1:
        idx = grids[0]
        valid = (idx >= 0) & (idx < isz[0])
        in_flat = np.where(valid, idx, -1)
    else:
        iy, ix = grids
        vy = (iy >= 0) & (iy < isz[0])
        vx = (ix >= 0) & (ix < isz[1])
        valid4 = vy[:, None, :, None] & vx[None, :, None, :]  # (Ky, Kx, Oy, Ox)
        flat4 = iy[:, None, :, None] * isz[1] + ix[None, :, None, :]
        valid = valid4.reshape(n_taps, n_pos)
        in_flat = np.where(valid, flat4.reshape(n_taps, n_pos), -1)
    valid_i = valid.astype(np.int64)
    m = mask.reshape(cout, cin_g, n_taps).astype(np.int64)
    k_out = m.sum(axis=1)  # (Cout, T) kept taps per output channel
    fan_in = (k_out @ valid_i).reshape(-1)  # (Cout * P,)
    # R[t, i]: number of output positions whose tap t reads input position i (0 or 1).
    reach = np.zeros((n_taps, n_ipos), dtype=np.int64)
    tt, oo = np.nonzero(valid)
    np.add.at(reach, (tt, in_flat[tt, oo]), 1)
    k_in = np.concatenate([m[gi * cout_g : (gi + 1) * cout_g].sum(axis=0) for gi in range(g)])
    fan_out = (k_in @ reach).reshape(-1)  # (Cin * P_in,)

    def incidence(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
        n_out = cout * n_pos
        bounds = np.append(starts, n_out if stop is None else stop)
        out = np.zeros((cin * n_ipos, len(starts)), dtype=np.int64)
        for j in range(len(starts)):
            a, b = int(bounds[j]), int(bounds[j + 1])
            if a >= b:
                continue
            c0, c1 = a // n_pos, (b - 1) // n_pos
            ind = np.zeros((c1 - c0 + 1, n_pos), dtype=np.int64)
            ind.reshape(-1)[a - c0 * n_pos : b - c0 * n_pos] = 1
            acc = np.zeros((cin, n_ipos), dtype=np.int64)
            for t in range(n_taps):
                ok = valid[t]
                if not ok.any():
                    continue
                scat = np.zeros((c1 - c0 + 1, n_ipos), dtype=np.int64)
                scat[:, in_flat[t, ok]] = ind[:, ok]
                for gi in range(g):
                    lo, hi = max(c0, gi * cout_g), min(c1, (gi + 1) * cout_g - 1)
                    if lo > hi:
                        continue
                    w = m[lo : hi + 1, :, t]  # (nc, Cin_g)
                    acc[gi * cin_g : (gi + 1) * cin_g] += w.T @ scat[lo - c0 : hi - c0 + 1]
            out[:, j] = acc.reshape(-1)
        return out

    return LayerStats(
        n_out=cout * n_pos,
        n_in=cin * n_ipos,
        kept_weights=int(mask.sum()),
        fan_in=fan_in,
        fan_out=fan_out,
        incidence=incidence,
    )


def core_starts(n_units: int, k: int) -> np.ndarray:
    """First unit of each of ``k`` contiguous, near-equal core groups (the core mapping)."""
    return (np.arange(k, dtype=np.int64) * n_units) // k


# --------------------------------------------------------------------------------------------
# Report data model


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    """The outcome of one rule on one layer (``layer`` None: the whole network)."""

    rule: str  # dotted profile field or mapper rule, e.g. "neuron.fan_in_max"
    layer: str | None
    status: str  # "ok" | "violated" | "not_checked" | "no_limit"
    value: int | None = None  # observed worst case (per core under the chosen mapping)
    limit: int | None = None
    comparison: str = "<="  # value <= limit; ">=" for minimums; "==" for yes/no rules (1 = ok)
    cores_needed: int | None = None  # per-core rules: fewest cores that satisfy this rule alone
    relievable: bool = False  # unstructured pruning can relieve a violation
    confidence: str = ""  # of the limiting figure
    reason: str = ""  # not_checked: why; violated: the remedy

    @property
    def margin(self) -> int | None:
        """Headroom: ``limit - value`` (``value - limit`` for minimums); negative = violated."""
        if self.value is None or self.limit is None or self.comparison == "==":
            return None
        return self.limit - self.value if self.comparison == "<=" else self.value - self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "status": self.status,
            "value": self.value,
            "limit": self.limit,
            "comparison": self.comparison,
            "margin": self.margin,
            "cores_needed": self.cores_needed,
            "relievable": self.relievable,
            "confidence": self.confidence,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """A violated rule, quantified, with whether pruning helps and what to do otherwise."""

    rule: str
    layer: str | None
    value: int
    limit: int
    relievable: bool
    remedy: str
    message: str  # one line, e.g. "layer conv2: fan-in 288 > 256 (truenorth per-neuron limit)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "value": self.value,
            "limit": self.limit,
            "relievable": self.relievable,
            "remedy": self.remedy,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerFit:
    """Per-layer mapping result."""

    name: str
    kind: str
    neurons: int  # units of the synaptic op (post-synaptic neurons)
    kept_weights: int
    kept_synapses: int  # exact synaptic connections (conv: weights x valid positions)
    max_fan_in: int
    max_fan_out: int  # over this layer's input units, all consumers of the same source summed
    cores: int | None  # cores assigned (None: the mapper does not model cores)
    cores_by_rule: tuple[tuple[str, int | None], ...]
    binding_rule: str | None  # checked rule with the least relative headroom
    binding_margin: int | None
    checks: tuple[RuleResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "neurons": self.neurons,
            "kept_weights": self.kept_weights,
            "kept_synapses": self.kept_synapses,
            "max_fan_in": self.max_fan_in,
            "max_fan_out": self.max_fan_out,
            "cores": self.cores,
            "cores_by_rule": {r: n for r, n in self.cores_by_rule},
            "binding_rule": self.binding_rule,
            "binding_margin": self.binding_margin,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FitReport:
    """Everything :func:`check_fit` found. ``fits`` is the verdict."""

    target: str
    mapper: str
    fits: bool
    layers: tuple[LayerFit, ...]
    network_checks: tuple[RuleResult, ...]
    cores_used: int | None
    cores_available: int | None
    chips_used: int | None
    chips_available: int | None
    violations: tuple[Violation, ...]
    not_checked: tuple[RuleResult, ...]
    profile_sha256: str = field(default="", compare=False)

    def summary(self) -> str:
        """One line: verdict, cores and the first violation."""
        avail = "?" if self.cores_available is None else str(self.cores_available)
        cores = (
            "cores not modelled"
            if self.cores_used is None
            else f"{self.cores_used} of {avail} cores"
        )
        head = f"{self.target}: {'fits' if self.fits else 'does not fit'} ({cores}"
        head += f", {len(self.not_checked)} rules not checked)"
        if self.violations:
            head += f"; {self.violations[0].message}"
            if len(self.violations) > 1:
                head += f" (+{len(self.violations) - 1} more)"
        return head

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with a fixed key order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "mapper": self.mapper,
            "profile_sha256": self.profile_sha256,
            "fits": self.fits,
            "cores_used": self.cores_used,
            "cores_available": self.cores_available,
            "chips_used": self.chips_used,
            "chips_available": self.chips_available,
            "violations": [v.to_dict() for v in self.violations],
            "not_checked": [
                {"rule": r.rule, "layer": r.layer, "reason": r.reason} for r in self.not_checked
            ],
            "network_checks": [c.to_dict() for c in self.network_checks],
            "layers": [lf.to_dict() for lf in self.layers],
        }


def raise_if_not_fit(report: FitReport) -> None:
    """Raise :class:`ConstraintViolation` with the first violation when the model does not fit."""
    if report.fits:
        return
    first = report.violations[0]
    more = f" (+{len(report.violations) - 1} more violations)" if len(report.violations) > 1 else ""
    raise ConstraintViolation(f"{first.message}{more}; {first.remedy}")


# --------------------------------------------------------------------------------------------
# The checker


_RULE_TEXT = {
    "neuron.fan_in_max": "fan-in",
    "neuron.fan_out_max": "fan-out",
    "core.neurons_max": "neurons per core",
    "core.in_axons_max": "input axons per core",
    "core.synapse_memory_bits": "synapse memory bits per core",
    "core.synapses_max": "synapses per core",
    "chip.cores": "cores",
    "xylo.input_channels_max": "input channels",
    "xylo.hidden_neurons_max": "hidden neurons",
    "xylo.output_neurons_max": "output neurons",
    "xylo.recurrent_weights_max": "recurrent weights",
    "xylo.input_projection_max": "neurons fed by the inputs",
    "xylo.output_projection_max": "neurons feeding the outputs",
    "dynapse.tags_max": "tags",
    "speck.kernel_memory": "kernel memory words",
    "speck.neuron_memory": "neuron memory words",
    "speck.mapping": "layers to place",
    "akida.fc_inputs_max": "fully connected inputs",
}
_SCOPE = {"neuron": "per-neuron limit", "core": "per-core limit", "chip": "per-chip limit"}
_REMEDY = {
    "neuron.fan_in_max": "prune to at most {limit} inputs per neuron (find_fit_keep / --fit)",
    "neuron.fan_out_max": "prune to at most {limit} targets per neuron (find_fit_keep / --fit)",
    "core.neurons_max": "a single neuron cannot be split; reduce the layer",
    "core.in_axons_max": "prune whole inputs of the neuron, or reduce the layer's inputs",
    "core.synapse_memory_bits": "prune this layer further (find_fit_keep / --fit)",
    "core.synapses_max": "prune this layer further (find_fit_keep / --fit)",
}


@dataclass
class _Ctx:
    profile: HardwareProfile
    layers: Sequence[LayerGeometry]
    stats: list[LayerStats]
    sources: list[str]  # resolved source name per layer ("@input" for the network input)
    fan_out_by_source: dict[str, np.ndarray]
    checks: dict[str, list[RuleResult]] = field(default_factory=dict)
    net: list[RuleResult] = field(default_factory=list)
    cores: dict[str, int | None] = field(default_factory=dict)
    cores_by_rule: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)

    def add(self, r: RuleResult) -> None:
        if r.layer is None:
            self.net.append(r)
        else:
            self.checks.setdefault(r.layer, []).append(r)


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
    if chips is not None and chips < 1:
        raise ModelError(f"chips = {chips}: must be a positive integer")
    if cores is not None and cores < 1:
        raise ModelError(f"cores = {cores}: must be a positive integer")
    names = [lay.name for lay in layers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ModelError(f"layer names must be unique; repeated: {', '.join(dup)}")
    stats = [layer_stats(lay) for lay in layers]
    sources: list[str] = []
    for i, lay in enumerate(layers):
        src = lay.source if lay.source is not None else (names[i - 1] if i else INPUT)
        if src != INPUT and src not in names:
            raise ModelError(f"layer {lay.name!r}: source = {src!r} is not a layer name")
        sources.append(src)
    fan_out_by_source: dict[str, np.ndarray] = {}
    for src, st in zip(sources, stats, strict=True):
        prev = fan_out_by_source.get(src)
        if prev is None:
            fan_out_by_source[src] = st.fan_out.copy()
        elif prev.shape == st.fan_out.shape:
            fan_out_by_source[src] = prev + st.fan_out
        else:  # consumers read the source through different reshapes: bound by the sum of maxima
            fan_out_by_source[src] = np.full(1, prev.max(initial=0) + st.fan_out.max(initial=0))
    every = _Ctx(
        profile=profile,
        layers=layers,
        stats=stats,
        sources=sources,
        fan_out_by_source=fan_out_by_source,
    )
    primary, merged = _populations(layers, stats)
    mapper = profile.mapper
    joined = [lay for lay in layers if primary[lay.name] != lay.name or lay.kind == IDENTITY]
    if joined and mapper not in _JOIN_MAPPERS:
        lay = joined[0]
        raise ModelError(f"fit check on {profile.name}: layer {lay.name!r} joins neuron "
                         f"population {lay.population!r} with layer {primary[lay.name]!r} "
                         f"(a residual join), which the {mapper} mapper does not model; the "
                         f"{', '.join(_JOIN_MAPPERS)} mappers do")
    # the mapped units: one per neuron population, its layers' connectivity merged
    keep = [i for i, lay in enumerate(layers) if primary[lay.name] == lay.name]
    ctx = _Ctx(
        profile=profile,
        layers=[layers[i] for i in keep],
        stats=[merged.get(layers[i].name, stats[i]) for i in keep],
        sources=[sources[i] for i in keep],
        fan_out_by_source=fan_out_by_source,
        checks=every.checks,
        net=every.net,
    )

    _rule_layer_kinds(every)
    if mapper in ("loihi", "truenorth", "spinnaker"):
        _rule_fan_in(ctx)
        _rule_fan_out(every)
        _rules_per_core(ctx)
    elif mapper == "speck":
        _rules_speck(ctx)
    elif mapper == "xylo":
        _rules_xylo(ctx)
    elif mapper == "dynapse2":
        _rule_fan_in(ctx)
        _rules_dynapse(ctx)
    elif mapper == "akida":
        _rule_fan_in(ctx)
        _rules_akida(ctx)

    cores_used, cores_avail, chips_used, chips_avail = _rule_chip_cores(ctx, chips, cores)

    layer_fits = []
    for lay, st, src in zip(layers, stats, sources, strict=True):
        checks = tuple(ctx.checks.get(lay.name, []))
        binding, bmargin = _binding(checks)
        fo = ctx.fan_out_by_source[src]
        joins = primary[lay.name] != lay.name
        if joins:  # its neurons, fan-in and cores are the population's, on its first layer
            binding, bmargin = f"mapped with {primary[lay.name]}", None
        whole = merged.get(lay.name, st)
        layer_fits.append(
            LayerFit(
                name=lay.name,
                kind=lay.kind,
                neurons=0 if joins else st.n_out,
                kept_weights=st.kept_weights,
                kept_synapses=st.synapses,
                max_fan_in=int(whole.fan_in.max(initial=0)),
                max_fan_out=int(fo.max(initial=0)),
                cores=ctx.cores.get(lay.name),
                cores_by_rule=tuple(ctx.cores_by_rule.get(lay.name, [])),
                binding_rule=binding,
                binding_margin=bmargin,
                checks=checks,
            )
        )
    all_checks = [c for lf in layer_fits for c in lf.checks] + ctx.net
    violations = tuple(_violation(c, profile.name) for c in all_checks if c.status == "violated")
    not_checked = tuple(c for c in all_checks if c.status == "not_checked")
    return FitReport(
        target=profile.name,
        mapper=mapper,
        fits=not violations,
        layers=tuple(layer_fits),
        network_checks=tuple(ctx.net),
        cores_used=cores_used,
        cores_available=cores_avail,
        chips_used=chips_used,
        chips_available=chips_avail,
        violations=violations,
        not_checked=not_checked,
        profile_sha256=profile.sha256,
    )


def population_members(layers: Sequence[LayerGeometry]) -> dict[str, list[int]]:
    """Positions of the layers that drive each neuron population (``population``), in order;
    the first of each is the one the population is mapped on."""
    members: dict[str, list[int]] = {}
    for i, lay in enumerate(layers):
        if lay.population is not None:
            members.setdefault(lay.population, []).append(i)
    return members


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

        def incidence(starts: np.ndarray, stop: int | None = None,
                      parts: list[LayerStats] = parts) -> np.ndarray:
            return np.vstack([st.incidence(starts, stop) for st in parts])

        merged[layers[group[0]].name] = LayerStats(
            n_out=n,
            n_in=sum(st.n_in for st in parts),
            kept_weights=sum(st.kept_weights for st in parts),
            fan_in=np.sum([st.fan_in for st in parts], axis=0),
            fan_out=np.concatenate([st.fan_out for st in parts]),
            incidence=incidence,
        )
    return primary, merged


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


def _violation(c: RuleResult, target: str) -> Violation:
    what = _RULE_TEXT.get(c.rule, c.rule)
    op = ">" if c.comparison == "<=" else "<"
    where = f"layer {c.layer}" if c.layer is not None else "network"
    assert c.value is not None and c.limit is not None  # violated results always carry both
    if c.comparison == "==":
        return Violation(
            rule=c.rule,
            layer=c.layer,
            value=c.value,
            limit=c.limit,
            relievable=c.relievable,
            remedy=c.reason,
            message=f"{where}: {c.rule} violated: {c.reason} ({target})",
        )
    scope = _SCOPE.get(c.rule.partition(".")[0], c.rule)
    msg = f"{where}: {what} {c.value:,} {op} {c.limit:,} ({target} {scope})"
    return Violation(
        rule=c.rule,
        layer=c.layer,
        value=c.value,
        limit=c.limit,
        relievable=c.relievable,
        remedy=c.reason,
        message=msg,
    )


def _limit_result(
    fig: Figure,
    rule: str,
    layer: str | None,
    value: int,
    *,
    relievable: bool,
    remedy: str,
    comparison: str = "<=",
    cores_needed: int | None = None,
) -> RuleResult:
    """Compare ``value`` with a figure, or say why it cannot be checked."""
    if fig.unlimited:
        return RuleResult(
            rule=rule,
            layer=layer,
            status="no_limit",
            value=value,
            confidence=fig.confidence,
            reason=fig.source,
        )
    limit = fig.as_int()
    if limit is None:
        why = "figure unverified (U), not enforced" if fig.known else "figure unknown"
        return RuleResult(
            rule=rule,
            layer=layer,
            status="not_checked",
            value=value,
            confidence=fig.confidence,
            reason=f"not checked ({why})",
        )
    ok = value <= limit if comparison == "<=" else value >= limit
    return RuleResult(
        rule=rule,
        layer=layer,
        status="ok" if ok else "violated",
        value=value,
        limit=limit,
        comparison=comparison,
        cores_needed=cores_needed,
        relievable=relievable,
        confidence=fig.confidence,
        reason="" if ok else remedy.format(limit=limit),
    )


def _not_checked(rule: str, layer: str | None, reason: str, conf: str = "unknown") -> RuleResult:
    return RuleResult(
        rule=rule,
        layer=layer,
        status="not_checked",
        confidence=conf,
        reason=f"not checked ({reason})",
    )


def _rule_layer_kinds(ctx: _Ctx) -> None:
    fig = ctx.profile.layers.supported
    for lay in ctx.layers:
        if lay.kind == IDENTITY:  # one synapse per neuron: plain connectivity on every chip
            continue
        if not fig.usable:
            ctx.add(_not_checked("layers.supported", lay.name, "supported layer kinds unknown"))
            continue
        assert isinstance(fig.value, tuple)
        ok = lay.kind in fig.value
        ctx.add(
            RuleResult(
                rule="layers.supported",
                layer=lay.name,
                status="ok" if ok else "violated",
                value=int(ok),
                limit=1,
                comparison="==",
                relievable=False,
                confidence=fig.confidence,
                reason=""
                if ok
                else f"{lay.kind} is not supported (supported: "
                f"{', '.join(map(str, fig.value))}); replace the layer",
            )
        )


def _rule_fan_in(ctx: _Ctx) -> None:
    fig = ctx.profile.neuron.fan_in_max
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        ctx.add(
            _limit_result(
                fig,
                "neuron.fan_in_max",
                lay.name,
                int(st.fan_in.max(initial=0)),
                relievable=True,
                remedy=_REMEDY["neuron.fan_in_max"],
            )
        )


def _rule_fan_out(ctx: _Ctx) -> None:
    fig = ctx.profile.neuron.fan_out_max
    for lay, src in zip(ctx.layers, ctx.sources, strict=True):
        value = int(ctx.fan_out_by_source[src].max(initial=0))
        ctx.add(
            _limit_result(
                fig,
                "neuron.fan_out_max",
                lay.name,
                value,
                relievable=True,
                remedy=_REMEDY["neuron.fan_out_max"],
            )
        )


# ---- per-core rules (loihi, truenorth, spinnaker mappers)


def _loihi_bits(
    counts: np.ndarray,
    group_size: int,
    dense_axon: np.ndarray | None,
    weight_bits: int,
    p: HardwareProfile,
) -> np.ndarray:
    """Synapse memory bits per (axon, group) with NengoLoihi's block encoding."""
    enc = p.loihi_synapse_encoding
    assert enc is not None
    blk = enc.block_synapses_max.as_int()
    hdr = enc.block_header_bits.as_int()
    word = enc.word_bits.as_int()
    idx_map = enc.index_bits_map.value
    assert blk and hdr is not None and word and isinstance(idx_map, tuple)
    need = max(int(group_size - 1).bit_length(), 1)
    fitting = [int(b) for b in idx_map if int(b) >= need]
    idx_bits = fitting[0] if fitting else 10**9  # group too large to index: never fits
    bpw = np.full(counts.shape, weight_bits + idx_bits, dtype=np.int64)
    if dense_axon is not None:
        bpw[dense_axon] = weight_bits

    def block(n: np.ndarray) -> np.ndarray:
        return -(-(n * bpw + hdr) // word) * word

    full, rem = counts // blk, counts % blk
    return full * block(np.full_like(counts, blk)) + np.where(rem > 0, block(rem), 0)


def _weight_bits(lay: LayerGeometry, p: HardwareProfile) -> int:
    base = lay.weight_bits_hint or p.precision.weight_bits.as_int() or 8
    enc = p.loihi_synapse_encoding
    if enc is not None and isinstance(enc.weight_bits_map.value, tuple):
        allowed = sorted(int(b) for b in enc.weight_bits_map.value)
        fitting = [b for b in allowed if b >= base]
        return fitting[0] if fitting else allowed[-1]
    return base


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


def _rules_per_core(ctx: _Ctx) -> None:
    p = ctx.profile
    npc_fig = p.core.neurons_max
    npc = npc_fig.as_int()
    enc = p.core.synapse_encoding
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        n = st.n_out
        per_rule: list[tuple[str, int | None]] = []
        # name -> (limit, usage(k) -> max per-core value, figure, relievable)
        rules: dict[str, tuple[int, Callable[[int], int], Figure, bool]] = {}
        if npc is not None:
            rules["core.neurons_max"] = (npc, lambda k, n=n: -(-n // k), npc_fig, False)
        else:
            ctx.add(_not_checked("core.neurons_max", lay.name, "figure unknown"))
        mem_fig = p.core.synapse_memory_bits
        wb = _weight_bits(lay, p) if enc.value == "loihi1_blocks" and mem_fig.usable else None
        reduced: dict[int, tuple[int, int]] = {}

        def per_core(k: int, st: LayerStats = st, n: int = n, lay: LayerGeometry = lay,
                     wb: int | None = wb, reduced: dict = reduced) -> tuple[int, int]:
            """(most input axons, most synapse-memory bits) of any of the k core groups.

            Streams the groups a chunk at a time, so memory stays bounded whatever k is.
            """
            if k not in reduced:
                starts = core_starts(n, k)
                chunk = max(1, _INCIDENCE_CELLS // max(st.n_in, 1))
                size = -(-n // k)
                axons = bits = 0
                for a in range(0, k, chunk):
                    sub = starts[a : a + chunk]
                    stop = int(starts[a + chunk]) if a + chunk < k else n
                    counts = st.incidence(sub, stop)
                    axons = max(axons, int((counts > 0).sum(axis=0).max(initial=0)))
                    if wb is not None:
                        dense = None
                        if lay.kind == "linear":
                            dense = counts == np.diff(np.append(sub, stop))[None, :]
                        per_group = _loihi_bits(counts, size, dense, wb, p).sum(axis=0)
                        bits = max(bits, int(per_group.max(initial=0)))
                reduced[k] = (axons, bits)
            return reduced[k]

        # one neuron per core: every synapse of a neuron comes through its own input axon
        at_n: dict[str, int] = {}
        fan_max = int(st.fan_in.max(initial=0))
        ax_fig = p.core.in_axons_max
        ax = ax_fig.as_int()
        if ax is not None:
            rules["core.in_axons_max"] = (ax, lambda k, f=per_core: f(k)[0], ax_fig, True)
            at_n["core.in_axons_max"] = fan_max
        else:
            ctx.add(
                _limit_result(ax_fig, "core.in_axons_max", lay.name, 0, relievable=True, remedy="")
            )
        if wb is not None:
            rules["core.synapse_memory_bits"] = (
                mem_fig.as_int() or 0, lambda k, f=per_core: f(k)[1], mem_fig, True)
            if n:  # k == n: each axon carries one synapse (dense when the layer is linear)
                one = np.ones(1, dtype=np.int64)
                dense1 = np.ones(1, dtype=bool) if lay.kind == "linear" else None
                at_n["core.synapse_memory_bits"] = fan_max * int(
                    _loihi_bits(one, 1, dense1, wb, p)[0])
        elif enc.value == "none":
            ctx.add(
                RuleResult(
                    rule="core.synapse_memory_bits",
                    layer=lay.name,
                    status="no_limit",
                    confidence=enc.confidence,
                    reason=enc.source,
                )
            )
        elif enc.value not in ("count", "crossbar"):  # count budgets: core.synapses_max below
            why = "synapse encoding unknown" if not enc.known else "figure unknown"
            ctx.add(_not_checked("core.synapse_memory_bits", lay.name, why))
        syn_fig = p.core.synapses_max
        if enc.value in ("count", "crossbar") and syn_fig.usable:
            fi = st.fan_in

            def syn(k: int, fi: np.ndarray = fi, n: int = n) -> int:
                return int(np.add.reduceat(fi, core_starts(n, k)).max(initial=0)) if n else 0

            rules["core.synapses_max"] = (syn_fig.as_int() or 0, syn, syn_fig, True)
        elif enc.value in ("count", "crossbar"):
            ctx.add(
                _limit_result(syn_fig, "core.synapses_max", lay.name, 0, relievable=True, remedy="")
            )
        out_fig = p.core.out_axons_max
        if out_fig.usable:
            ctx.add(
                _not_checked(
                    "core.out_axons_max",
                    lay.name,
                    "needs the downstream routing, which this checker does not model",
                    out_fig.confidence,
                )
            )
        else:
            ctx.add(
                _limit_result(
                    out_fig, "core.out_axons_max", lay.name, 0, relievable=False, remedy=""
                )
            )

        if n == 0:
            ctx.cores[lay.name] = 0
            continue
        lo = 1
        if npc is not None:
            lo = -(-n // npc)
        needed: dict[str, int | None] = {}
        for rule, (limit, usage, _fig, _rel) in rules.items():
            if rule == "core.neurons_max":
                needed[rule] = -(-n // limit)
            else:
                ok_n = at_n[rule] <= limit if rule in at_n else None
                needed[rule] = _min_cores(lambda k, u=usage, lim=limit: u(k) <= lim, 1, n, ok_n)
            per_rule.append((rule, needed[rule]))
        k = max([lo, *[v for v in needed.values() if v is not None]])
        if any(v is None for v in needed.values()):
            k = n  # a rule no mapping satisfies: spread to one neuron per core, as far as it goes
        # The rules' own minima need not hold together (group boundaries shift): step up.
        while k < n and any(u(k) > lim for lim, u, _f, _r in rules.values()):
            k += 1
        ctx.cores[lay.name] = k
        ctx.cores_by_rule[lay.name] = per_rule
        for rule, (limit, usage, fig, rel) in rules.items():
            value = at_n[rule] if k == n and rule in at_n else usage(k)
            ok = value <= limit
            ctx.add(
                RuleResult(
                    rule=rule,
                    layer=lay.name,
                    status="ok" if ok else "violated",
                    value=value,
                    limit=limit,
                    cores_needed=needed[rule],
                    relievable=rel,
                    confidence=fig.confidence,
                    reason=""
                    if ok
                    else _REMEDY[rule].format(limit=limit) + " (one neuron alone exceeds a core)",
                )
            )


def _rule_chip_cores(
    ctx: _Ctx, chips: int | None, cores: int | None
) -> tuple[int | None, int | None, int | None, int | None]:
    p = ctx.profile
    cpc = p.cores_per_chip
    n_chips = chips if chips is not None else 1
    if not ctx.cores or any(v is None for v in ctx.cores.values()):
        ctx.add(
            _not_checked(
                "chip.cores",
                None,
                "this mapper does not model core allocation"
                if p.mapper == "akida"
                else "core count unknown",
            )
        )
        return None, cores, None, n_chips
    used = sum(v for v in ctx.cores.values() if v is not None)
    if cores is not None:
        avail: int | None = cores
    elif cpc is not None:
        avail = cpc * n_chips
    else:
        avail = None
    chips_used = -(-used // cpc) if cpc else None
    if avail is None:
        ctx.add(_not_checked("chip.cores", None, "cores per chip unknown"))
        return used, None, chips_used, n_chips
    # Pruning relieves a core shortage only if the neuron-count minimum alone fits.
    floor = 0
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        by_rule = dict(ctx.cores_by_rule.get(lay.name, []))
        floor += by_rule.get("core.neurons_max") or (1 if st.n_out else 0)
    if p.mapper in ("xylo", "dynapse2"):
        floor = used
    ok = used <= avail
    rel = floor <= avail
    ctx.add(
        RuleResult(
            rule="chip.cores",
            layer=None,
            status="ok" if ok else "violated",
            value=used,
            limit=avail,
            relievable=rel,
            confidence=p.chip.cores.confidence,
            reason=""
            if ok
            else (
                "prune further (find_fit_keep / --fit) or allow more cores/chips (--chips, --cores)"
                if rel
                else f"the neuron counts alone need {floor} cores; use more chips (--chips) "
                "or a smaller network"
            ),
        )
    )
    return used, avail, chips_used, n_chips


# ---- Speck / DYNAP-CNN


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


def _rules_speck(ctx: _Ctx) -> None:
    sp = ctx.profile.speck
    assert sp is not None
    km = [int(x) for x in sp.kernel_memory_words.value]  # type: ignore[union-attr]
    nm = [int(x) for x in sp.neuron_memory_words.value]  # type: ignore[union-attr]
    shape_remedy = "pruning does not help; change the layer's shape"
    for lay in ctx.layers:
        name = lay.name
        kernel, neuron = speck_memory(lay)
        ctx.add(
            _limit_result(
                sp.out_channels_max,
                "speck.out_channels_max",
                name,
                lay.out_shape[0],
                relievable=False,
                remedy="split the layer's output channels; " + shape_remedy,
            )
        )
        if lay.kind == "conv2d":
            ks = lay.mask.shape[2:]
            s, p, dl = _conv_params(lay)
            ctx.add(
                RuleResult(
                    rule="speck.square_kernel",
                    layer=name,
                    status="ok" if ks[0] == ks[1] else "violated",
                    value=int(ks[1]),
                    limit=int(ks[0]),
                    comparison="==",
                    relievable=False,
                    confidence="V-code",
                    reason="" if ks[0] == ks[1] else "use a square kernel",
                )
            )
            for fig, rule, value, remedy in (
                (sp.kernel_size_max, "speck.kernel_size_max", max(ks), "use a smaller kernel"),
                (sp.padding_max, "speck.padding_max", max(p), "reduce the padding"),
            ):
                ctx.add(_limit_result(fig, rule, name, value, relievable=False, remedy=remedy))
            strides = sp.strides.value
            ok = isinstance(strides, tuple) and all(x in strides for x in s)
            ctx.add(
                RuleResult(
                    rule="speck.strides",
                    comparison="==",
                    layer=name,
                    status="ok" if ok else "violated",
                    value=max(s),
                    limit=max(s),
                    relievable=False,
                    confidence=sp.strides.confidence,
                    reason="" if ok else f"stride {s} must be one of {strides}",
                )
            )
            if max(dl) > 1 or lay.groups > 1:
                ctx.add(
                    _not_checked(
                        "speck.dilation_groups",
                        name,
                        "dilated or grouped convolution support unknown",
                    )
                )
            for fig, rule, value, remedy in (
                (sp.input_size_max, "speck.input_size_max", max(lay.in_shape[1:]),
                 "downsample the input"),
                (sp.output_size_max, "speck.output_size_max", max(lay.out_shape[1:]),
                 "use a larger stride or downsample before this layer"),
            ):
                ctx.add(_limit_result(fig, rule, name, value, relievable=False, remedy=remedy))
        for what, used, words, fig, hint in (
            ("kernel", kernel, km, sp.kernel_memory_words, "fewer channels or a smaller kernel"),
            ("neuron", neuron, nm, sp.neuron_memory_words,
             "fewer channels or a smaller output map"),
        ):
            ok = used <= max(words)
            ctx.add(
                RuleResult(
                    rule=f"speck.{what}_memory",
                    layer=name,
                    status="ok" if ok else "violated",
                    value=used,
                    limit=max(words),
                    relievable=False,
                    confidence=fig.confidence,
                    reason="" if ok else f"{what} memory depends only on shapes; "
                    f"{shape_remedy} ({hint})",
                )
            )
        n_dest = sum(1 for s_ in ctx.sources if s_ == name)
        ctx.add(
            _limit_result(
                sp.destinations_max,
                "speck.destinations_max",
                name,
                n_dest,
                relievable=False,
                remedy="merge or chain the consumers of this layer",
            )
        )
        ctx.cores[name] = 1
        ctx.cores_by_rule[name] = [("speck.layer_per_core", 1)]
    fits = []
    for lay in ctx.layers:
        kernel, neuron = speck_memory(lay)
        fits.append([c for c in range(len(km)) if kernel <= km[c] and neuron <= nm[c]])
    assign = _match(fits, len(km)) if len(ctx.layers) <= len(km) else None
    ok = assign is not None
    ctx.add(
        RuleResult(
            rule="speck.mapping",
            layer=None,
            status="ok" if ok else "violated",
            value=len(ctx.layers)
            if ok
            else len(ctx.layers) + 1
            if len(ctx.layers) <= len(km)
            else len(ctx.layers),
            limit=len(km),
            relievable=False,
            confidence=sp.kernel_memory_words.confidence,
            reason=""
            if ok
            else "no one-to-one assignment of layers to cores satisfies the kernel "
            "and neuron memories; " + shape_remedy,
        )
    )
    if assign is not None:
        for lay, c in zip(ctx.layers, assign, strict=True):
            kernel, neuron = speck_memory(lay)
            ctx.add(
                RuleResult(
                    rule=f"speck.core{c}.kernel_memory",
                    layer=lay.name,
                    status="ok",
                    value=kernel,
                    limit=km[c],
                    confidence="V-code",
                )
            )
            ctx.add(
                RuleResult(
                    rule=f"speck.core{c}.neuron_memory",
                    layer=lay.name,
                    status="ok",
                    value=neuron,
                    limit=nm[c],
                    confidence="V-code",
                )
            )


# ---- Xylo


def _rules_xylo(ctx: _Ctx) -> None:
    xy = ctx.profile.xylo
    assert xy is not None
    lays, stats = ctx.layers, ctx.stats
    if not lays:
        return
    first, last = lays[0], lays[-1]
    ctx.add(
        _limit_result(
            xy.input_channels_max,
            "xylo.input_channels_max",
            first.name,
            stats[0].n_in,
            relievable=False,
            remedy="reduce the input channels (e.g. a filter bank with fewer bands)",
        )
    )
    ctx.add(
        RuleResult(
            rule="xylo.depth",
            layer=None,
            status="ok" if len(lays) >= 2 else "violated",
            value=len(lays),
            limit=2,
            comparison=">=",
            relievable=False,
            confidence="V-code",
            reason=""
            if len(lays) >= 2
            else "add a hidden layer: Xylo needs hidden and output neuron layers",
        )
    )
    hidden = sum(st.n_out for st in stats[:-1])
    ctx.add(
        _limit_result(
            xy.hidden_neurons_max,
            "xylo.hidden_neurons_max",
            None,
            hidden,
            relievable=False,
            remedy="reduce the hidden layer widths",
        )
    )
    ctx.add(
        _limit_result(
            xy.output_neurons_max,
            "xylo.output_neurons_max",
            last.name,
            stats[-1].n_out,
            relievable=False,
            remedy="reduce the output classes",
        )
    )
    for i, lay in enumerate(lays):
        has_neurons = bool(lay.neuron_shape)
        rule = "xylo.outputs_from_neurons" if i == len(lays) - 1 else "xylo.weights_feed_neurons"
        ctx.add(
            RuleResult(
                rule=rule,
                layer=lay.name,
                status="ok" if has_neurons else "violated",
                value=int(has_neurons),
                limit=1,
                comparison="==",
                relievable=False,
                confidence="V-code",
                reason="" if has_neurons else "put a spiking neuron layer after this weight layer",
            )
        )
    fo_fig = ctx.profile.neuron.fan_out_max
    rec = 0
    for lay, st in zip(lays[1:-1], stats[1:-1], strict=True):
        rec += st.kept_weights
        ctx.add(
            _limit_result(
                fo_fig,
                "neuron.fan_out_max",
                lay.name,
                int(st.fan_out.max(initial=0)),
                relievable=True,
                remedy=_REMEDY["neuron.fan_out_max"],
            )
        )
    ctx.add(
        _limit_result(
            xy.recurrent_weights_max,
            "xylo.recurrent_weights_max",
            None,
            rec,
            relievable=True,
            remedy="prune the hidden-to-hidden weights further (find_fit_keep / --fit)",
        )
    )
    ctx.add(
        _limit_result(
            xy.input_projection_max,
            "xylo.input_projection_max",
            first.name,
            int((stats[0].fan_in > 0).sum()),
            relievable=True,
            remedy="prune every input weight of some first-layer neurons",
        )
    )
    ctx.add(
        _limit_result(
            xy.output_projection_max,
            "xylo.output_projection_max",
            last.name,
            int((stats[-1].fan_out > 0).sum()),
            relievable=True,
            remedy="prune every output weight of some hidden neurons",
        )
    )
    for lay in lays:
        ctx.cores[lay.name] = None
    ctx.cores.clear()
    ctx.cores["@xylo"] = 1


# ---- DYNAP-SE2


def _rules_dynapse(ctx: _Ctx) -> None:
    dy = ctx.profile.dynapse
    assert dy is not None
    total = sum(st.n_out for st in ctx.stats)
    n_in = sum(st.n_in for st, s in zip(ctx.stats, ctx.sources, strict=True) if s == INPUT)
    ctx.add(
        _limit_result(
            dy.tags_max,
            "dynapse.tags_max",
            None,
            n_in + 2 * total,
            relievable=False,
            remedy="tags depend on neuron counts (n_in + 2 * "
            "n_neurons); reduce the inputs or the layer widths",
        )
    )
    npc = ctx.profile.core.neurons_max.as_int()
    if npc is None:
        ctx.add(_not_checked("core.neurons_max", None, "figure unknown"))
        return
    ctx.cores["@dynapse"] = -(-total // npc)
    cpc = ctx.profile.cores_per_chip
    dest = dy.destinations_max.as_int()
    if cpc and dest is not None and -(-ctx.cores["@dynapse"] // cpc) <= dest:
        ctx.add(
            RuleResult(
                rule="dynapse.destinations_max",
                layer=None,
                status="ok",
                value=-(-ctx.cores["@dynapse"] // cpc),
                limit=dest,
                confidence=dy.destinations_max.confidence,
            )
        )
    else:
        ctx.add(
            _not_checked(
                "dynapse.destinations_max",
                None,
                "more chips than destinations: needs placement of neurons on chips",
            )
        )


# ---- Akida


def _rules_akida(ctx: _Ctx) -> None:
    ak = ctx.profile.akida
    assert ak is not None
    for lay, st in zip(ctx.layers, ctx.stats, strict=True):
        if lay.kind == "linear":
            ctx.add(
                _limit_result(
                    ak.fc_inputs_max,
                    "akida.fc_inputs_max",
                    lay.name,
                    st.n_in,
                    relievable=False,
                    remedy="reduce the flattened input size",
                )
            )
            continue
        if lay.kind != "conv2d":
            continue
        ks = lay.mask.shape[2:]
        s, _p, dl = _conv_params(lay)
        sizes = ak.conv_kernel_sizes.value
        ok = ks[0] == ks[1] and isinstance(sizes, tuple) and ks[0] in sizes
        ctx.add(
            RuleResult(
                rule="akida.conv_kernel_sizes",
                comparison="==",
                layer=lay.name,
                status="ok" if ok else "violated",
                value=int(max(ks)),
                limit=int(max(ks)),
                relievable=False,
                confidence=ak.conv_kernel_sizes.confidence,
                reason="" if ok else f"kernel {ks} must be square with size in {sizes}",
            )
        )
        strides = ak.conv_strides.value
        ok = (
            isinstance(strides, tuple)
            and all(x in strides for x in s)
            and (max(s) == 1 or tuple(ks) == (3, 3))
        )
        ctx.add(
            RuleResult(
                rule="akida.conv_strides",
                comparison="==",
                layer=lay.name,
                status="ok" if ok else "violated",
                value=max(s),
                limit=max(s),
                relievable=False,
                confidence=ak.conv_strides.confidence,
                reason="" if ok else f"stride {s} must be 1, or 2 with a 3x3 kernel",
            )
        )
        ok = max(dl) == 1 and lay.groups == 1
        ctx.add(
            RuleResult(
                rule="akida.no_dilation_or_groups",
                layer=lay.name,
                status="ok" if ok else "violated",
                value=int(ok),
                limit=1,
                comparison="==",
                relievable=False,
                confidence="V",
                reason="" if ok else "Akida 1.0 has no dilated or grouped convolution",
            )
        )
        ctx.add(
            _limit_result(
                ak.conv_channels_max,
                "akida.conv_channels_max",
                lay.name,
                lay.in_shape[0],
                relievable=False,
                remedy="reduce the channels",
            )
        )
        ctx.add(
            _limit_result(
                ak.conv_input_size_max,
                "akida.conv_input_size_max",
                lay.name,
                max(lay.in_shape[1:]),
                relievable=False,
                remedy="downsample the input",
            )
        )
    for lay in ctx.layers:
        ctx.cores[lay.name] = None


def _replace_masks(
    layers: Sequence[LayerGeometry], masks: Mapping[str, np.ndarray]
) -> list[LayerGeometry]:
    """Layers with their masks swapped for ``masks`` (used by the capped allocator)."""
    return [
        dataclasses.replace(lay, mask=masks[lay.name]) if lay.name in masks else lay
        for lay in layers
    ]
