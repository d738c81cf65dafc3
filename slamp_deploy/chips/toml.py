"""Reading and writing profile TOML: ``load_profile`` by shipped name or path, the schema checks
with one-line errors naming the file, field, value and what was expected, and ``dump_profile``.

The schema is the common sections of ``slamp_deploy.chips.profile`` plus, per chip family, the
one section its family declares (``Family.section``): required with that ``mapper``, refused with
any other. The field reference is ``hardware_profiles/SCHEMA.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slamp_deploy.chips.family import families, family_named, mapper_names
from slamp_deploy.chips.figure import CONFIDENCES, Alternative, Figure, Value
from slamp_deploy.chips.profile import (
    COMMON_SECTIONS,
    SCHEMA_VERSION,
    HardwareProfile,
    did_you_mean,
    field_error,
)
from slamp_deploy.errors import ProfileError, UnknownTargetError

__all__ = ["available_targets", "describe_targets", "dump_profile", "load_profile"]

_TOP_KEYS = ("schema_version", "name", "description", "mapper", "sources")
_FIGURE_KEYS = ("value", "confidence", "source", "note", "unlimited", "alternatives", "low",
                "high")
_ALT_KEYS = ("value", "confidence", "source", "note")
_LAYER_KINDS = ("linear", "conv1d", "conv2d")
_ENCODINGS = ("loihi1_blocks", "count", "crossbar", "shape_only", "none")


def _family_sections() -> dict[str, tuple[type, str]]:
    """Section name -> (dataclass, the mapper that needs it), from the family registry."""
    return {f.section[0]: (f.section[1], f.name) for f in families() if f.section is not None}


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
        hint = did_you_mean(name, known)
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


def _parse(data: bytes, fname: str, path: str) -> HardwareProfile:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{fname}: not valid TOML ({e})") from None
    check_magnitudes(doc, fname)
    profile = _build(doc, fname)
    return dataclasses.replace(profile, path=path, sha256=hashlib.sha256(data).hexdigest())


#: no chip figure (a count, bits, energy in pJ, a time in ns) comes near this; a larger value
#: is a typo or a wrong unit, and would overflow to inf in the products the reports compute
MAGNITUDE_MAX = 1e15


def check_magnitudes(doc: Any, fname: str, where: str = "") -> None:
    """Every number in the profile finite (TOML has ``inf`` and ``nan``) and of plausible size.

    Raises:
        ProfileError: names the file, the dotted field and the value.
    """
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            check_magnitudes(v, fname, f"{where}.{k}" if where else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            check_magnitudes(v, fname, f"{where}[{i}]")
    elif (isinstance(doc, (int, float)) and not isinstance(doc, bool)
          and (not math.isfinite(doc) or abs(doc) > MAGNITUDE_MAX)):
        raise ProfileError(f"{fname}: {where} = {doc!r}: out of range (finite, at most "
                               f"{MAGNITUDE_MAX:g} in size); check the value and its unit")


def _check_keys(
    fname: str, prefix: str, table: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            hint = did_you_mean(key, allowed)
            if not hint:
                hint = f"; expected one of: {', '.join(allowed)}"
            raise ProfileError(f"{fname}: unknown key {where}{hint}")



def _build(doc: Mapping[str, Any], fname: str) -> HardwareProfile:
    family_sections = _family_sections()
    _check_keys(fname, "", doc, (*_TOP_KEYS, *COMMON_SECTIONS, *family_sections))
    for key in _TOP_KEYS:
        if key not in doc:
            raise ProfileError(f"{fname}: missing top-level key {key}")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise field_error(fname, "schema_version", version, f"must be {SCHEMA_VERSION}")
    for key in ("name", "description"):
        if not isinstance(doc[key], str) or not doc[key].strip() or "\n" in doc[key]:
            raise field_error(fname, key, doc[key], "must be a non-empty one-line string")
    mapper = doc["mapper"]
    names = mapper_names()
    if mapper not in names:
        raise field_error(
            fname,
            "mapper",
            mapper,
            f"must be one of {', '.join(names)}" + did_you_mean(str(mapper), names),
        )
    sources = _sources(doc["sources"], fname)
    sections: dict[str, Any] = {}
    for name, cls in COMMON_SECTIONS.items():
        if name not in doc:
            raise ProfileError(f"{fname}: missing section [{name}]")
        sections[name] = _build_section(doc[name], cls, name, fname)
    profile = HardwareProfile(
        schema_version=version,
        name=doc["name"],
        description=doc["description"],
        mapper=mapper,
        sources=sources,
        family_section=_family_section(doc, mapper, family_sections, fname),
        **sections,
    )
    _check_family_needs(profile, fname)
    _cross_checks(profile, fname)
    return profile


def _sources(sources: Any, fname: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(sources, dict) or not sources:
        raise field_error(fname, "sources", sources, "must be a non-empty table of key = citation")
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise field_error(fname, f"sources.{key}", text, "must be a non-empty citation string")
    return tuple((str(k), str(v)) for k, v in sources.items())


def _family_section(doc: Mapping[str, Any], mapper: str,
                    family_sections: Mapping[str, tuple[type, str]], fname: str
                    ) -> tuple[str, Any] | None:
    """The mapper's own section, built; any other family's section is refused."""
    family = family_named(mapper)
    own_name = family.section[0] if family is not None and family.section is not None else None
    own: tuple[str, Any] | None = None
    for name, (cls, needs) in family_sections.items():
        if name == own_name:
            if name not in doc:
                raise ProfileError(
                    f"{fname}: missing section [{name}] (required by mapper {mapper})"
                )
            own = (name, _build_section(doc[name], cls, name, fname))
        elif name in doc:
            raise ProfileError(
                f"{fname}: section [{name}] is only allowed with mapper = {needs!r}, not {mapper!r}"
            )
    return own


def _build_section(table: Any, cls: type, section: str, fname: str) -> Any:
    if not isinstance(table, dict):
        raise field_error(fname, section, table, "must be a table")
    names = tuple(f.name for f in dataclasses.fields(cls))
    _check_keys(fname, section, table, names)
    values: dict[str, Figure] = {}
    for f in dataclasses.fields(cls):
        dotted = f"{section}.{f.name}"
        if f.name not in table and f.metadata.get("optional"):
            values[f.name] = Figure(value=None, unit=f.metadata["unit"], confidence="unknown",
                                    source="not given in the profile")
            continue
        if f.name not in table:
            raise ProfileError(
                f"{fname}: missing {dotted} (a table with value, confidence, source; "
                'write confidence = "unknown" and no value when nothing is published)'
            )
        values[f.name] = _build_figure(table[f.name], dotted, f.metadata, fname)
    return cls(**values)




def _build_figure(raw: Any, dotted: str, meta: Mapping[str, str], fname: str) -> Figure:
    if not isinstance(raw, dict):
        raise field_error(
            fname,
            dotted,
            raw,
            "must be a table {value, confidence, source} (bare numbers carry no provenance)",
        )
    _check_keys(fname, dotted, raw, _FIGURE_KEYS)
    conf = raw.get("confidence")
    if conf not in CONFIDENCES:
        raise field_error(
            fname,
            f"{dotted}.confidence",
            conf,
            f"must be one of {', '.join(CONFIDENCES)}" + did_you_mean(str(conf), CONFIDENCES),
        )
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise field_error(
            fname,
            f"{dotted}.source",
            source,
            "must be a non-empty string naming where "
            "the figure comes from (or where it was looked for)",
        )
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise field_error(fname, f"{dotted}.note", note, "must be a string")
    unlimited = raw.get("unlimited", False)
    if not isinstance(unlimited, bool):
        raise field_error(fname, f"{dotted}.unlimited", unlimited, "must be true or false")
    value = _figure_value(raw, conf, unlimited, dotted, meta["kind"], fname)
    low, high = _bounds(raw, value, dotted, meta["kind"], fname)
    return Figure(
        value=value,
        unit=meta["unit"],
        source=source,
        confidence=conf,
        note=note,
        unlimited=unlimited,
        alternatives=_alternatives(raw, dotted, meta["kind"], fname),
        low=low,
        high=high,
    )


def _bounds(raw: Mapping[str, Any], value: Value | None, dotted: str, kind: str, fname: str
            ) -> tuple[float | None, float | None]:
    """The optional ``low``/``high`` of an energy or timing figure: finite, non-negative, and
    ``low <= value <= high``; the energy report turns them into each term's range."""
    if "low" not in raw and "high" not in raw:
        return None, None
    if kind not in ("energy", "number"):
        key = "low" if "low" in raw else "high"
        raise field_error(fname, f"{dotted}.{key}", raw[key],
                          "bounds are only allowed on energy and timing figures")
    if value is None:
        key = "low" if "low" in raw else "high"
        raise field_error(fname, f"{dotted}.{key}", raw[key],
                          "bounds need a value (a central figure) beside them")
    out: dict[str, float] = {}
    for key in ("low", "high"):
        if key in raw:
            out[key] = float(_check_value(raw[key], "energy", f"{dotted}.{key}", fname))
    lo, hi, v = out.get("low", float(value)), out.get("high", float(value)), float(value)
    if lo > hi:
        raise field_error(fname, f"{dotted}.low", raw.get("low"),
                          f"must not exceed {dotted}.high = {hi!r}")
    if not lo <= v <= hi:
        raise field_error(fname, f"{dotted}.value", raw["value"],
                          f"must lie within {dotted}.low = {lo!r} and {dotted}.high = {hi!r}")
    return out.get("low"), out.get("high")


def _figure_value(raw: Mapping[str, Any], conf: str, unlimited: bool, dotted: str, kind: str,
                  fname: str) -> Value | None:
    if "value" in raw:
        if conf == "unknown":
            raise field_error(
                fname, f"{dotted}.value", raw["value"], 'must be absent when confidence = "unknown"'
            )
        if unlimited:
            raise field_error(
                fname, f"{dotted}.value", raw["value"], "must be absent when unlimited = true"
            )
        return _check_value(raw["value"], kind, f"{dotted}.value", fname)
    if conf != "unknown" and not unlimited:
        raise ProfileError(
            f"{fname}: missing {dotted}.value (confidence is {conf!r}; use "
            'confidence = "unknown" if no figure is published)'
        )
    if unlimited and conf == "unknown":
        raise field_error(
            fname,
            f"{dotted}.confidence",
            conf,
            "must say how the absence of a limit is known when unlimited = true",
        )
    return None


def _alternatives(raw: Mapping[str, Any], dotted: str, kind: str, fname: str
                  ) -> tuple[Alternative, ...]:
    alts_raw = raw.get("alternatives", [])
    if not isinstance(alts_raw, list):
        raise field_error(fname, f"{dotted}.alternatives", alts_raw, "must be an array of tables")
    alts: list[Alternative] = []
    for i, alt in enumerate(alts_raw):
        where = f"{dotted}.alternatives[{i}]"
        if not isinstance(alt, dict):
            raise field_error(fname, where, alt, "must be a table {value, confidence, source}")
        _check_keys(fname, where, alt, _ALT_KEYS)
        for key in ("value", "confidence", "source"):
            if key not in alt:
                raise ProfileError(f"{fname}: missing {where}.{key}")
        if alt["confidence"] not in CONFIDENCES[:-1]:
            raise field_error(
                fname,
                f"{where}.confidence",
                alt["confidence"],
                f"must be one of {', '.join(CONFIDENCES[:-1])}",
            )
        if not isinstance(alt["source"], str) or not alt["source"].strip():
            raise field_error(fname, f"{where}.source", alt["source"], "must be a non-empty string")
        alts.append(
            Alternative(
                value=_check_value(alt["value"], kind, f"{where}.value", fname),
                confidence=alt["confidence"],
                source=alt["source"],
                note=str(alt.get("note", "")),
            )
        )
    return tuple(alts)


def _check_value(v: Any, kind: str, dotted: str, fname: str) -> Value:
    if kind in ("count", "bits"):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise field_error(fname, dotted, v, "must be a positive integer")
        return v
    if kind in ("number", "energy"):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0 or (kind == "number" and v == 0):
            what = "a positive number" if kind == "number" else "a non-negative number"
            raise field_error(fname, dotted, v, f"must be {what}")
        return v
    if kind == "int_list":
        if (
            not isinstance(v, list)
            or not v
            or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in v)
        ):
            raise field_error(fname, dotted, v, "must be a non-empty array of positive integers")
        return tuple(v)
    if kind == "str_list":
        if not isinstance(v, list) or not v or any(not isinstance(x, str) or not x for x in v):
            raise field_error(fname, dotted, v, "must be a non-empty array of strings")
        return tuple(v)
    if kind == "str":
        if not isinstance(v, str) or not v:
            raise field_error(fname, dotted, v, "must be a non-empty string")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise field_error(fname, dotted, v, "must be true or false")
        return v
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover - schema bug




def _check_family_needs(p: HardwareProfile, fname: str) -> None:
    """The family-section figures the family's rules cannot run without (``Family.needs``) must
    carry a usable value: refused here, with the field named, rather than failing in a rule."""
    family = family_named(p.mapper)
    if family is None or family.section is None:
        return
    sec = p.section(family.section[0])
    for name in family.needs:
        fig = getattr(sec, name)
        if not fig.usable:
            raise field_error(
                fname, f"{family.section[0]}.{name}.value", fig.value,
                f"the {family.name} rules need this figure (confidence {fig.confidence!r} is "
                "not usable); give its value with a known confidence (V, V-code, D or S)")


def _cross_checks(p: HardwareProfile, fname: str) -> None:
    """Rules spanning several fields: the common ones, then the family's."""
    enc = p.core.synapse_encoding
    if enc.known and enc.value not in _ENCODINGS:
        raise field_error(
            fname,
            "core.synapse_encoding.value",
            enc.value,
            f"must be one of {', '.join(_ENCODINGS)}" + did_you_mean(str(enc.value), _ENCODINGS),
        )
    sup = p.layers.supported
    if isinstance(sup.value, tuple):
        for kind in sup.value:
            if kind not in _LAYER_KINDS:
                raise field_error(
                    fname,
                    "layers.supported.value",
                    list(sup.value),
                    f"entries must be among {', '.join(_LAYER_KINDS)}"
                    + did_you_mean(str(kind), _LAYER_KINDS),
                )
    family = family_named(p.mapper)
    assert family is not None  # the mapper was validated against the registry
    family.cross_check(p, fname)


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
    for section, obj in profile.sections():
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
    if fig.low is not None:
        parts.append(f"low = {_toml_value(fig.low)}")
    if fig.high is not None:
        parts.append(f"high = {_toml_value(fig.high)}")
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

