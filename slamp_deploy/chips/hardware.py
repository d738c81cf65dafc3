"""Hardware profiles: chip limits and energy figures loaded from TOML, each with its provenance.

A profile is data, never code (style rule 5). Every number is a :class:`Figure` carrying its
value, unit, source and confidence tag, so a report can say how much to trust a verdict:

========  ==============================================================================
``V``       verbatim in the cited source (vendor code, docs, official abstract)
``V-code``  verbatim constant or formula in a vendor or tool repository
``D``       derived by simple arithmetic from cited figures
``S``       secondary (third-party summary or transcription)
``U``       unverified: widely quoted but not found in the sources; never used by a check
``unknown`` no public figure; ``value`` is ``None`` and stays ``None``
========  ==============================================================================

Profiles ship in ``slamp_deploy.hardware_profiles`` (one ``<name>.toml`` per chip) and a user's
own file loads the same way: ``load_profile("loihi2")`` or ``load_profile(Path("chip.toml"))``.
The field reference is ``hardware_profiles/SCHEMA.md``. This module imports the standard library
only.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.resources
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slamp_deploy.errors import ProfileError, UnknownTargetError

__all__ = [
    "CONFIDENCES",
    "MAPPERS",
    "SCHEMA_VERSION",
    "AkidaRules",
    "Alternative",
    "ChipLimits",
    "CoreLimits",
    "DynapseRules",
    "EnergyFigures",
    "Figure",
    "HardwareProfile",
    "LayerSupport",
    "LoihiSynapseEncoding",
    "NeuronLimits",
    "Precision",
    "SpeckRules",
    "SystemLimits",
    "Timing",
    "XyloRules",
    "available_targets",
    "describe_targets",
    "dump_profile",
    "load_profile",
]

SCHEMA_VERSION = 1

#: Confidence tags, strongest first. ``U`` figures are recorded but never enforced.
CONFIDENCES: tuple[str, ...] = ("V", "V-code", "D", "S", "U", "unknown")
#: Confidence tags a fit rule may rely on.
USABLE_CONFIDENCES: frozenset[str] = frozenset({"V", "V-code", "D", "S"})

#: Rule families of :mod:`slamp_deploy.fit`; a profile names exactly one.
MAPPERS: tuple[str, ...] = (
    "akida",
    "dynapse2",
    "loihi",
    "speck",
    "spinnaker",
    "truenorth",
    "xylo",
)

Value = int | float | str | bool | tuple[int | float | str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alternative:
    """A conflicting published value that the profile did not pick."""

    value: Value
    confidence: str
    source: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One published figure: value (``None`` when unknown), unit and provenance.

    ``unlimited`` marks a limit that does not exist (for example Loihi's per-neuron fan-in, which
    only the core's axons and memory bound); ``value`` is then ``None`` but the figure is known.
    """

    value: Value | None
    unit: str
    source: str
    confidence: str
    note: str = ""
    unlimited: bool = False
    alternatives: tuple[Alternative, ...] = ()

    @property
    def known(self) -> bool:
        """True when a number is published (any confidence, ``U`` included)."""
        return self.value is not None

    @property
    def usable(self) -> bool:
        """True when a fit rule may enforce this figure (known and not ``U``)."""
        return self.value is not None and self.confidence in USABLE_CONFIDENCES

    def as_int(self) -> int | None:
        """The value as an int when usable, else ``None``."""
        if not self.usable or isinstance(self.value, (tuple, str, bool)):
            return None
        return int(self.value)  # type: ignore[arg-type]

    def as_float(self) -> float | None:
        """The value as a float when known (energy figures: ``U`` included), else ``None``."""
        if self.value is None or isinstance(self.value, (tuple, str, bool)):
            return None
        return float(self.value)

    def describe(self) -> str:
        """Short rendering, e.g. ``"128 count (V-code)"`` or ``"unknown"``."""
        if self.unlimited:
            return f"no limit ({self.confidence})"
        if self.value is None:
            return "unknown"
        return f"{_render_value(self.value)} {self.unit} ({self.confidence})"


# Value kinds: count (positive int), bits (positive int), number (positive int/float),
# energy (non-negative number), int_list (non-empty list of positive ints), str_list, str, bool.


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemLimits:
    """Board or system level."""

    chips_per_board: Figure = field(metadata={"unit": "chip", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipLimits:
    """One chip."""

    cores: Figure = field(
        metadata={"unit": "core", "kind": "count"}
    )  # neuro cores / PEs / layer cores usable by a network
    neurons: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    synapses: Figure = field(metadata={"unit": "synapse", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreLimits:
    """One core (neuro core, PE, crossbar, layer processor)."""

    neurons_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    synapses_max: Figure = field(
        metadata={"unit": "synapse", "kind": "count"}
    )  # count-based synapse budget per core
    synapse_memory_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    synapse_encoding: Figure = field(
        metadata={"unit": "", "kind": "str"}
    )  # see SCHEMA.md: loihi1_blocks, crossbar, ...
    in_axons_max: Figure = field(metadata={"unit": "axon", "kind": "count"})
    out_axons_max: Figure = field(metadata={"unit": "axon", "kind": "count"})
    shared_between_layers: Figure = field(metadata={"unit": "", "kind": "bool"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronLimits:
    """One neuron."""

    fan_in_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})
    fan_out_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Precision:
    """Number formats."""

    weight_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    state_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerSupport:
    """Synaptic layer kinds the chip's toolchain maps."""

    supported: Figure = field(metadata={"unit": "", "kind": "str_list"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Time base."""

    timestep_s: Figure = field(metadata={"unit": "s", "kind": "number"})


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyFigures:
    """Energy per event and static power, for the energy report."""

    synop_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per synaptic operation
    spike_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per spike sent / routed
    neuron_update_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per neuron update
    static_w: Figure = field(metadata={"unit": "W", "kind": "energy"})  # static power per chip


@dataclass(frozen=True, slots=True, kw_only=True)
class LoihiSynapseEncoding:
    """Loihi 1 synapse memory encoding (NengoLoihi ``SynapseConfig.bits_per_axon``)."""

    block_synapses_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})
    block_header_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    word_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    weight_bits_map: Figure = field(metadata={"unit": "bit", "kind": "int_list"})
    index_bits_map: Figure = field(metadata={"unit": "bit", "kind": "int_list"})


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


@dataclass(frozen=True, slots=True, kw_only=True)
class DynapseRules:
    """DYNAP-SE2 routing rules (rockpool dynapse allocator)."""

    tags_max: Figure = field(
        metadata={"unit": "tag", "kind": "count"}
    )  # n_in + 2 * n_neurons <= tags_max
    destinations_max: Figure = field(
        metadata={"unit": "chip", "kind": "count"}
    )  # SRAM destination entries per neuron


@dataclass(frozen=True, slots=True, kw_only=True)
class AkidaRules:
    """Akida 1.0 layer rules (BrainChip user guide)."""

    fc_inputs_max: Figure = field(metadata={"unit": "input", "kind": "count"})
    conv_channels_max: Figure = field(metadata={"unit": "channel", "kind": "count"})
    conv_input_size_max: Figure = field(metadata={"unit": "pixel", "kind": "count"})
    conv_kernel_sizes: Figure = field(metadata={"unit": "tap", "kind": "int_list"})
    conv_strides: Figure = field(metadata={"unit": "", "kind": "int_list"})


_COMMON_SECTIONS: dict[str, type] = {
    "system": SystemLimits,
    "chip": ChipLimits,
    "core": CoreLimits,
    "neuron": NeuronLimits,
    "precision": Precision,
    "layers": LayerSupport,
    "timing": Timing,
    "energy": EnergyFigures,
}
#: Mapper-specific sections: required when the profile's mapper needs them, forbidden otherwise.
_MAPPER_SECTIONS: dict[str, tuple[type, str]] = {
    "loihi_synapse_encoding": (LoihiSynapseEncoding, "loihi"),
    "speck": (SpeckRules, "speck"),
    "xylo": (XyloRules, "xylo"),
    "dynapse": (DynapseRules, "dynapse2"),
    "akida": (AkidaRules, "akida"),
}
_TOP_KEYS = ("schema_version", "name", "description", "mapper", "sources")
_FIGURE_KEYS = ("value", "confidence", "source", "note", "unlimited", "alternatives")
_ALT_KEYS = ("value", "confidence", "source", "note")
_LAYER_KINDS = ("linear", "conv1d", "conv2d")


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareProfile:
    """A validated chip profile. Build it with :func:`load_profile`."""

    SECTIONS: ClassVar[tuple[str, ...]] = (*_COMMON_SECTIONS, *_MAPPER_SECTIONS)

    schema_version: int
    name: str  # registry slug, identical to the file stem for shipped profiles
    description: str  # one line
    mapper: str  # rule family in slamp_deploy.fit, one of MAPPERS
    sources: tuple[tuple[str, str], ...]  # (key, citation), in file order
    system: SystemLimits
    chip: ChipLimits
    core: CoreLimits
    neuron: NeuronLimits
    precision: Precision
    layers: LayerSupport
    timing: Timing
    energy: EnergyFigures
    loihi_synapse_encoding: LoihiSynapseEncoding | None = None
    speck: SpeckRules | None = None
    xylo: XyloRules | None = None
    dynapse: DynapseRules | None = None
    akida: AkidaRules | None = None
    path: str = field(default="", compare=False)  # file it was loaded from
    sha256: str = field(default="", compare=False)  # of the file's bytes, for report headers

    def figures(self) -> list[tuple[str, Figure]]:
        """Every figure as ``(dotted_field, figure)``, in schema order."""
        out: list[tuple[str, Figure]] = []
        for section in self.SECTIONS:
            obj = getattr(self, section)
            if obj is None:
                continue
            for f in dataclasses.fields(obj):
                out.append((f"{section}.{f.name}", getattr(obj, f.name)))
        return out

    def figure(self, dotted: str) -> Figure:
        """The figure at ``section.field``; raises :class:`KeyError` when absent."""
        section, _, name = dotted.partition(".")
        obj = getattr(self, section, None) if section in self.SECTIONS else None
        if obj is None or not hasattr(obj, name):
            raise KeyError(dotted)
        fig: Figure = getattr(obj, name)
        return fig

    @property
    def cores_per_chip(self) -> int | None:
        """Usable cores per chip, or ``None`` when unknown."""
        return self.chip.cores.as_int()

    def one_line(self) -> str:
        """One line for ``slamp-deploy targets``."""
        cores = self.chip.cores
        neurons = self.core.neurons_max
        parts = [self.description]
        if cores.known:
            parts.append(f"{_render_value(cores.value)} cores/chip ({cores.confidence})")
        if neurons.known:
            parts.append(f"{_render_value(neurons.value)} neurons/core ({neurons.confidence})")
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Loading and validation


def available_targets() -> list[str]:
    """Names of the shipped profiles, sorted."""
    root = importlib.resources.files("slamp_deploy.hardware_profiles")
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def describe_targets() -> list[tuple[str, str]]:
    """``(name, one_line)`` for each shipped profile, sorted by name."""
    return [(name, load_profile(name).one_line()) for name in available_targets()]


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a profile by registry name (``"loihi2"``) or by file path.

    A string counts as a path when it ends with ``.toml`` or contains a path separator.

    Raises:
        UnknownTargetError: the name is not a shipped profile (lists them, suggests the nearest).
        ProfileError: the file is missing, is not TOML, or breaks the schema (one line naming the
            file, the dotted field, the bad value and what was expected).
    """
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        path = Path(name_or_path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ProfileError(f"{path}: cannot read profile ({e.strerror or e})") from None
        return _parse(data, path.name, str(path))
    name = name_or_path
    known = available_targets()
    if name not in known:
        hint = _did_you_mean(name, known)
        raise UnknownTargetError(
            f"unknown target {name!r}{hint}; known targets: {', '.join(known)} "
            "(or pass a path to a .toml profile)"
        )
    res = importlib.resources.files("slamp_deploy.hardware_profiles").joinpath(f"{name}.toml")
    profile = _parse(res.read_bytes(), f"{name}.toml", str(res))
    if profile.name != name:
        raise ProfileError(
            f"{name}.toml: name = {profile.name!r}: must equal the file stem {name!r}"
        )
    return profile


def _looks_like_path(s: str) -> bool:
    return s.endswith(".toml") or "/" in s or "\\" in s


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def _parse(data: bytes, fname: str, path: str) -> HardwareProfile:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{fname}: not valid TOML ({e})") from None
    profile = _build(doc, fname)
    return dataclasses.replace(profile, path=path, sha256=hashlib.sha256(data).hexdigest())


def _err(fname: str, dotted: str, value: Any, expected: str) -> ProfileError:
    return ProfileError(f"{fname}: {dotted} = {value!r}: {expected}")


def _check_keys(
    fname: str, prefix: str, table: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            hint = _did_you_mean(key, allowed)
            if not hint:
                hint = f"; expected one of: {', '.join(allowed)}"
            raise ProfileError(f"{fname}: unknown key {where}{hint}")


def _build(doc: Mapping[str, Any], fname: str) -> HardwareProfile:
    allowed_top = (*_TOP_KEYS, *HardwareProfile.SECTIONS)
    _check_keys(fname, "", doc, allowed_top)
    for key in _TOP_KEYS:
        if key not in doc:
            raise ProfileError(f"{fname}: missing top-level key {key}")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _err(fname, "schema_version", version, f"must be {SCHEMA_VERSION}")
    for key in ("name", "description"):
        if not isinstance(doc[key], str) or not doc[key].strip() or "\n" in doc[key]:
            raise _err(fname, key, doc[key], "must be a non-empty one-line string")
    mapper = doc["mapper"]
    if mapper not in MAPPERS:
        raise _err(
            fname,
            "mapper",
            mapper,
            f"must be one of {', '.join(MAPPERS)}" + _did_you_mean(str(mapper), MAPPERS),
        )
    sources = doc["sources"]
    if not isinstance(sources, dict) or not sources:
        raise _err(fname, "sources", sources, "must be a non-empty table of key = citation")
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise _err(fname, f"sources.{key}", text, "must be a non-empty citation string")

    sections: dict[str, Any] = {}
    for name, cls in _COMMON_SECTIONS.items():
        if name not in doc:
            raise ProfileError(f"{fname}: missing section [{name}]")
        sections[name] = _build_section(doc[name], cls, name, fname)
    for name, (cls, needs) in _MAPPER_SECTIONS.items():
        if mapper == needs:
            if name not in doc:
                raise ProfileError(
                    f"{fname}: missing section [{name}] (required by mapper {mapper})"
                )
            sections[name] = _build_section(doc[name], cls, name, fname)
        elif name in doc:
            raise ProfileError(
                f"{fname}: section [{name}] is only allowed with mapper = {needs!r}, not {mapper!r}"
            )
    profile = HardwareProfile(
        schema_version=version,
        name=doc["name"],
        description=doc["description"],
        mapper=mapper,
        sources=tuple((str(k), str(v)) for k, v in sources.items()),
        **sections,
    )
    _cross_checks(profile, fname)
    return profile


def _build_section(table: Any, cls: type, section: str, fname: str) -> Any:
    if not isinstance(table, dict):
        raise _err(fname, section, table, "must be a table")
    names = tuple(f.name for f in dataclasses.fields(cls))
    _check_keys(fname, section, table, names)
    values: dict[str, Figure] = {}
    for f in dataclasses.fields(cls):
        dotted = f"{section}.{f.name}"
        if f.name not in table:
            raise ProfileError(
                f"{fname}: missing {dotted} (a table with value, confidence, source; "
                'write confidence = "unknown" and no value when nothing is published)'
            )
        values[f.name] = _build_figure(table[f.name], dotted, f.metadata, fname)
    return cls(**values)


def _build_figure(raw: Any, dotted: str, meta: Mapping[str, str], fname: str) -> Figure:
    if not isinstance(raw, dict):
        raise _err(
            fname,
            dotted,
            raw,
            "must be a table {value, confidence, source} (bare numbers carry no provenance)",
        )
    _check_keys(fname, dotted, raw, _FIGURE_KEYS)
    conf = raw.get("confidence")
    if conf not in CONFIDENCES:
        raise _err(
            fname,
            f"{dotted}.confidence",
            conf,
            f"must be one of {', '.join(CONFIDENCES)}" + _did_you_mean(str(conf), CONFIDENCES),
        )
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _err(
            fname,
            f"{dotted}.source",
            source,
            "must be a non-empty string naming where "
            "the figure comes from (or where it was looked for)",
        )
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise _err(fname, f"{dotted}.note", note, "must be a string")
    unlimited = raw.get("unlimited", False)
    if not isinstance(unlimited, bool):
        raise _err(fname, f"{dotted}.unlimited", unlimited, "must be true or false")
    kind = meta["kind"]
    value: Value | None = None
    if "value" in raw:
        if conf == "unknown":
            raise _err(
                fname, f"{dotted}.value", raw["value"], 'must be absent when confidence = "unknown"'
            )
        if unlimited:
            raise _err(
                fname, f"{dotted}.value", raw["value"], "must be absent when unlimited = true"
            )
        value = _check_value(raw["value"], kind, f"{dotted}.value", fname)
    elif conf != "unknown" and not unlimited:
        raise ProfileError(
            f"{fname}: missing {dotted}.value (confidence is {conf!r}; use "
            'confidence = "unknown" if no figure is published)'
        )
    elif unlimited and conf == "unknown":
        raise _err(
            fname,
            f"{dotted}.confidence",
            conf,
            "must say how the absence of a limit is known when unlimited = true",
        )
    alts_raw = raw.get("alternatives", [])
    if not isinstance(alts_raw, list):
        raise _err(fname, f"{dotted}.alternatives", alts_raw, "must be an array of tables")
    alts: list[Alternative] = []
    for i, alt in enumerate(alts_raw):
        where = f"{dotted}.alternatives[{i}]"
        if not isinstance(alt, dict):
            raise _err(fname, where, alt, "must be a table {value, confidence, source}")
        _check_keys(fname, where, alt, _ALT_KEYS)
        for key in ("value", "confidence", "source"):
            if key not in alt:
                raise ProfileError(f"{fname}: missing {where}.{key}")
        if alt["confidence"] not in CONFIDENCES[:-1]:
            raise _err(
                fname,
                f"{where}.confidence",
                alt["confidence"],
                f"must be one of {', '.join(CONFIDENCES[:-1])}",
            )
        if not isinstance(alt["source"], str) or not alt["source"].strip():
            raise _err(fname, f"{where}.source", alt["source"], "must be a non-empty string")
        alts.append(
            Alternative(
                value=_check_value(alt["value"], kind, f"{where}.value", fname),
                confidence=alt["confidence"],
                source=alt["source"],
                note=str(alt.get("note", "")),
            )
        )
    return Figure(
        value=value,
        unit=meta["unit"],
        source=source,
        confidence=conf,
        note=note,
        unlimited=unlimited,
        alternatives=tuple(alts),
    )


def _check_value(v: Any, kind: str, dotted: str, fname: str) -> Value:
    if kind in ("count", "bits"):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise _err(fname, dotted, v, "must be a positive integer")
        return v
    if kind in ("number", "energy"):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0 or (kind == "number" and v == 0):
            what = "a positive number" if kind == "number" else "a non-negative number"
            raise _err(fname, dotted, v, f"must be {what}")
        return v
    if kind == "int_list":
        if (
            not isinstance(v, list)
            or not v
            or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in v)
        ):
            raise _err(fname, dotted, v, "must be a non-empty array of positive integers")
        return tuple(v)
    if kind == "str_list":
        if not isinstance(v, list) or not v or any(not isinstance(x, str) or not x for x in v):
            raise _err(fname, dotted, v, "must be a non-empty array of strings")
        return tuple(v)
    if kind == "str":
        if not isinstance(v, str) or not v:
            raise _err(fname, dotted, v, "must be a non-empty string")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise _err(fname, dotted, v, "must be true or false")
        return v
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover - schema bug


_ENCODINGS = ("loihi1_blocks", "count", "crossbar", "shape_only", "none")


def _cross_checks(p: HardwareProfile, fname: str) -> None:
    """Rules spanning several fields."""
    enc = p.core.synapse_encoding
    if enc.known and enc.value not in _ENCODINGS:
        raise _err(
            fname,
            "core.synapse_encoding.value",
            enc.value,
            f"must be one of {', '.join(_ENCODINGS)}" + _did_you_mean(str(enc.value), _ENCODINGS),
        )
    sup = p.layers.supported
    if isinstance(sup.value, tuple):
        for kind in sup.value:
            if kind not in _LAYER_KINDS:
                raise _err(
                    fname,
                    "layers.supported.value",
                    list(sup.value),
                    f"entries must be among {', '.join(_LAYER_KINDS)}"
                    + _did_you_mean(str(kind), _LAYER_KINDS),
                )
    if p.speck is not None:
        km, nm = p.speck.kernel_memory_words.value, p.speck.neuron_memory_words.value
        if isinstance(km, tuple) and isinstance(nm, tuple) and len(km) != len(nm):
            raise _err(
                fname,
                "speck.neuron_memory_words.value",
                list(nm),
                f"must have one entry per core, like speck.kernel_memory_words ({len(km)})",
            )
        cores = p.chip.cores.value
        if isinstance(km, tuple) and isinstance(cores, int) and len(km) != cores:
            raise _err(
                fname,
                "chip.cores.value",
                cores,
                f"must equal the number of entries of speck.kernel_memory_words ({len(km)})",
            )
    if p.loihi_synapse_encoding is not None and enc.value == "loihi1_blocks":
        for name in (
            "block_synapses_max",
            "block_header_bits",
            "word_bits",
            "weight_bits_map",
            "index_bits_map",
        ):
            if not getattr(p.loihi_synapse_encoding, name).usable:
                raise _err(
                    fname,
                    f"loihi_synapse_encoding.{name}.confidence",
                    getattr(p.loihi_synapse_encoding, name).confidence,
                    "must be a usable figure when core.synapse_encoding = loihi1_blocks",
                )


# --------------------------------------------------------------------------------------------
# Writing TOML (the stdlib reads TOML but does not write it)


def dump_profile(profile: HardwareProfile) -> str:
    """Serialize a profile to TOML that :func:`load_profile` reads back to an equal object."""
    lines = [
        f"schema_version = {profile.schema_version}",
        f"name = {_toml_str(profile.name)}",
        f"description = {_toml_str(profile.description)}",
        f"mapper = {_toml_str(profile.mapper)}",
        "",
        "[sources]",
    ]
    lines += [f"{_toml_key(k)} = {_toml_str(v)}" for k, v in profile.sources]
    for section in HardwareProfile.SECTIONS:
        obj = getattr(profile, section)
        if obj is None:
            continue
        lines += ["", f"[{section}]"]
        for f in dataclasses.fields(obj):
            lines.append(f"{f.name} = {_figure_toml(getattr(obj, f.name))}")
    return "\n".join(lines) + "\n"


def _figure_toml(fig: Figure) -> str:
    parts = []
    if fig.value is not None:
        parts.append(f"value = {_toml_value(fig.value)}")
    if fig.unlimited:
        parts.append("unlimited = true")
    parts.append(f"confidence = {_toml_str(fig.confidence)}")
    parts.append(f"source = {_toml_str(fig.source)}")
    if fig.note:
        parts.append(f"note = {_toml_str(fig.note)}")
    if fig.alternatives:
        alts = []
        for a in fig.alternatives:
            items = [
                f"value = {_toml_value(a.value)}",
                f"confidence = {_toml_str(a.confidence)}",
                f"source = {_toml_str(a.source)}",
            ]
            if a.note:
                items.append(f"note = {_toml_str(a.note)}")
            alts.append("{ " + ", ".join(items) + " }")
        parts.append(f"alternatives = [{', '.join(alts)}]")
    return "{ " + ", ".join(parts) + " }"


def _toml_value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def _toml_str(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def _toml_key(k: str) -> str:
    bare = k.replace("_", "").replace("-", "").isalnum() and k.isascii()
    return k if bare else _toml_str(k)


def _render_value(v: Value | None) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_render_value(x) for x in v) + "]"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)
