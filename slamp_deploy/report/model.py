"""The run's report as frozen values: :class:`RunReport` and its typed sections, how they are
built from what the stages measured, and how they become report.json and come back from it.

``RunReport.to_dict()`` is report.json's content, key for key (the ``summary`` and
``markdown`` strings of the sections are rendered at serialization, by
:mod:`slamp_deploy.report.markdown`); ``RunReport.from_dict()`` reads it back, so report.md
and report.html can be rebuilt from a saved report.json. The ``export`` section is
:class:`slamp_deploy.verify.ExportSection`, typed where the checks are made.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from slamp_deploy.chips.figure import Alternative, Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.toml import available_targets, load_profile
from slamp_deploy.chips.verdict import FitReport, LayerFit, RuleResult, Violation
from slamp_deploy.errors import SlampError
from slamp_deploy.fit.structured import Relieved
from slamp_deploy.measure.activity import ActivityReport, LayerActivity, NeuronActivity
from slamp_deploy.measure.energy import (
    CONNECTION,
    AnnEstimate,
    EnergyEstimate,
    EnergyTerm,
    LayerEnergy,
    ann_estimate,
    estimate,
)
from slamp_deploy.measure.latency import BusiestCore, LatencyEstimate
from slamp_deploy.report import markdown as md
from slamp_deploy.verify import ExportSection

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "ActivityData",
    "ActivitySection",
    "CalibrationInfo",
    "CurrentMatching",
    "DataInfo",
    "DataPart",
    "DistributedInfo",
    "EnergySection",
    "EnvironmentInfo",
    "FitSection",
    "LayerRow",
    "ModelInfo",
    "ReportError",
    "RoundRecord",
    "RunReport",
    "SparsityInfo",
    "StructureRow",
    "StructureSection",
    "TargetEnergy",
    "activity_section",
    "energy_section",
    "report_json",
    "target_profiles",
]

SCHEMA = "slamp-deploy/report"
SCHEMA_VERSION = 1


class ReportError(SlampError, ValueError):
    """A report.json this version cannot read."""


def _plain(v: Any) -> Any:
    """JSON-ready: records to dicts, tuples to lists."""
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _tupled(v: Any) -> Any:
    """From JSON: lists to tuples (nested), so records stay hashable and frozen."""
    if isinstance(v, list):
        return tuple(_tupled(x) for x in v)
    return v


class _Record:
    """A flat record whose report.json form is its fields in order (``None`` fields listed in
    ``_OPTIONAL`` are left out); nested records are named in ``_NESTED``."""

    __slots__ = ()
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    _NESTED: ClassVar[Mapping[str, type[_Record]]] = {}

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None and f.name in self._OPTIONAL:
                continue
            out[f.name] = _plain(v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        kw = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in d:
                if f.name in cls._OPTIONAL:
                    kw[f.name] = None
                    continue
                raise ReportError(f"report.json: {cls.__name__} has no {f.name!r}; it was not "
                                  f"written by this version of slamp-deploy")
            v = d[f.name]
            nested = cls._NESTED.get(f.name)
            kw[f.name] = nested.from_dict(v) if nested is not None and v is not None \
                else _tupled(v)
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# Core records


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrentMatching(_Record):
    """Spread of one layer's current-matching factors."""

    min: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerRow(_Record):
    """Per-layer facts of the pruned model (floats rounded for the report)."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    weights_total: int
    weights_kept: int
    sparsity: float
    layer_score: float
    binding: str
    activity_rms_per_step: tuple[float, ...]
    neuron: str | None
    firing_rate_per_step: tuple[float, ...] | None
    current_matching_factors: CurrentMatching | None
    _NESTED: ClassVar[Mapping[str, type[_Record]]] = {"current_matching_factors": CurrentMatching}


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord(_Record):
    """One pruning round: its target and the accuracies after each step that ran."""

    round: int
    target_sparsity: float
    accuracy_pruned: float
    accuracy_current_matched: float | None = None
    accuracy_retrained: float | None = None
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"accuracy_current_matched",
                                                     "accuracy_retrained"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationInfo(_Record):
    samples: int
    timestep_weights: tuple[float, ...]
    timestep_weights_source: str | None
    lambda_variant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SparsityInfo(_Record):
    target: float
    achieved: float
    weights_total: int
    weights_kept: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NirAssumption(_Record):
    """What the NIR reader needed that the file did not say: ``source`` is "file" (slamp
    metadata), "given" (--nir-dt) or "assumed" (a default, also a warning)."""

    name: str
    value: str
    source: str
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo(_Record):
    spec: str
    weights: str | None
    ops: tuple[Mapping[str, Any], ...]  # SpikingGraph.describe(), one mapping per op
    nir_assumptions: tuple[NirAssumption, ...] | None = None  # --model graph.nir only
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"nir_assumptions"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelInfo:
        base = _Record.from_dict.__func__(cls, {k: v for k, v in d.items()  # type: ignore
                                                if k != "nir_assumptions"})
        facts = d.get("nir_assumptions")
        if facts is None:
            return base
        return dataclasses.replace(base, nir_assumptions=tuple(
            NirAssumption.from_dict(a) for a in facts))


@dataclass(frozen=True, slots=True, kw_only=True)
class DataPart(_Record):
    count: int
    source: str
    indices: tuple[int, ...] | None = None  # which samples (calibration and evaluation only)
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"indices"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DataInfo(_Record):
    seed: int
    split_seed: int
    retrain: DataPart
    calibration: DataPart
    evaluation: DataPart
    _NESTED: ClassVar[Mapping[str, type[_Record]]] = {
        "retrain": DataPart, "calibration": DataPart, "evaluation": DataPart}


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedInfo(_Record):
    world_size: int
    backend: str | None
    mask_digest_per_rank: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentInfo(_Record):
    python: str
    torch: str
    device: str
    threads: int


# --------------------------------------------------------------------------------------------
# Structure (--structure)


@dataclass(frozen=True, slots=True, kw_only=True)
class StructureRow(_Record):
    """One synaptic layer's output neurons/channels and input columns/channels, before and
    after the structure step, and its group (the layers whose outputs go together)."""

    name: str
    kind: str
    group: str
    fixed: str | None  # why its outputs all stay (the readout, a fixed join), or None
    outputs_before: int
    outputs_after: int
    inputs_before: int
    inputs_after: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StructureSection:
    """What the structure step removed (``--structure``)."""

    method: str  # slamp-group | lamp-group | uniform-l1
    fraction_removed: float  # of the channels of the prunable groups
    channels_removed: int
    channels_prunable: int  # channels of the groups that may lose some
    neurons_before: int  # spiking neurons of the full-size model (per sample)
    neurons_after: int
    weights_before: int
    weights_after: int
    searched: bool  # chosen by the --fit search (else the fraction given)
    attempts: int  # compact models the --fit search checked (0 without --fit)
    layers: tuple[StructureRow, ...]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
             if f.name != "layers"}
        d["layers"] = [r.to_dict() for r in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StructureSection:
        kw = {k: v for k, v in d.items() if k != "layers"}
        return cls(**kw, layers=tuple(StructureRow.from_dict(r) for r in d["layers"]))


# --------------------------------------------------------------------------------------------
# Fit


@dataclass(frozen=True, slots=True, kw_only=True)
class FitSection:
    """The fit check of the final masks, and the sparsity the ``--fit`` search chose."""

    report: FitReport
    fit_search_sparsity: float | None = None
    #: the rules that stopped the full-size model, relieved by the structure step (--structure)
    structure_relieved: tuple[Relieved, ...] = ()

    @property
    def summary(self) -> str:
        return self.report.summary()

    @property
    def markdown(self) -> str:
        return md.fit_markdown(self.report) + md.relieved_markdown(self.structure_relieved)

    def to_dict(self) -> dict[str, Any]:
        d = {"fits": self.report.fits, "summary": self.summary, "report": self.report.to_dict(),
             "markdown": self.markdown}
        if self.fit_search_sparsity is not None:
            d["fit_search_sparsity"] = self.fit_search_sparsity
        if self.structure_relieved:
            d["structure_relieved"] = [r.to_dict() for r in self.structure_relieved]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitSection:
        return cls(report=_fit_report(d["report"]),
                   fit_search_sparsity=d.get("fit_search_sparsity"),
                   structure_relieved=tuple(Relieved(**r)
                                            for r in d.get("structure_relieved", ())))


def _rule(d: Mapping[str, Any]) -> RuleResult:
    return RuleResult(**{k: v for k, v in d.items() if k != "margin"})


def _fit_report(d: Mapping[str, Any]) -> FitReport:
    """A FitReport from its ``to_dict()`` (``not_checked`` keeps rule, layer and reason)."""
    layers = tuple(LayerFit(**{**lf, "cores_by_rule": tuple(lf["cores_by_rule"].items()),
                               "checks": tuple(_rule(c) for c in lf["checks"])})
                   for lf in d["layers"])
    return FitReport(
        target=d["target"], mapper=d["mapper"], fits=d["fits"], layers=layers,
        network_checks=tuple(_rule(c) for c in d["network_checks"]),
        cores_used=d["cores_used"], cores_available=d["cores_available"],
        chips_used=d["chips_used"], chips_available=d["chips_available"],
        violations=tuple(Violation(**v) for v in d["violations"]),
        not_checked=tuple(RuleResult(rule=r["rule"], layer=r["layer"], status="not_checked",
                                     reason=r["reason"]) for r in d["not_checked"]),
        profile_sha256=d["profile_sha256"])


# --------------------------------------------------------------------------------------------
# Activity


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityData(_Record):
    """What the activity was measured on."""

    part: str
    source: str
    samples: int
    timesteps: int
    encoding: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivitySection:
    """The evaluation data measured twice: with the pruned weights and with the dense ones."""

    data: ActivityData
    dense: ActivityReport
    pruned: ActivityReport

    @property
    def summary(self) -> str:
        return md.activity_summary(self.dense, self.pruned, samples=self.data.samples,
                                   timesteps=self.data.timesteps)

    @property
    def markdown(self) -> str:
        return md.activity_markdown(self.dense, self.pruned, samples=self.data.samples,
                                    timesteps=self.data.timesteps, encoding=self.data.encoding)

    def to_dict(self) -> dict[str, Any]:
        d, p = self.dense, self.pruned
        return {
            "summary": self.summary,
            "markdown": self.markdown,
            "definitions": md.DEFINITIONS,
            "data": self.data.to_dict(),
            "dense": d.to_dict(),
            "pruned": p.to_dict(),
            "reduction": {
                "synops": _ratio(p.synops, d.synops),
                "spikes": _ratio(p.spikes, d.spikes),
                "synapses_kept": _ratio(sum(la.synapses_kept for la in p.layers),
                                        sum(la.synapses_kept for la in d.layers)),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ActivitySection:
        return cls(data=ActivityData.from_dict(d["data"]), dense=_activity(d["dense"]),
                   pruned=_activity(d["pruned"]))


def activity_section(dense: ActivityReport, pruned: ActivityReport,
                     data: ActivityData) -> ActivitySection:
    """The report's ``activity`` section from the two measurements."""
    return ActivitySection(data=data, dense=dense, pruned=pruned)


def _ratio(new: float, old: float) -> float | None:
    """Fraction removed: 1 - new/old (None when old is 0)."""
    return None if old == 0 else 1.0 - new / old


def _activity(d: Mapping[str, Any]) -> ActivityReport:
    """An ActivityReport from its ``to_dict()`` (every count is there; the rest is derived)."""
    n = d["samples"]
    layers = tuple(LayerActivity(
        name=la["name"], kind=la["kind"], neuron=la["neuron"],
        weight_shape=tuple(la["weight_shape"]), weights_total=la["weights_total"],
        weights_kept=la["weights_kept"], inputs=la["inputs"], outputs=la["outputs"],
        neurons=la["neurons"], synapses_total=la["synapses_total"],
        synapses_kept=la["synapses_kept"], fan_in_max=la["fan_in_max"],
        fan_out_max=la["fan_out_max"], samples=n,
        input_events=tuple(la["input_events_per_step"]),
        synops_ac=tuple(la["synops_ac_per_step"]), synops_mac=tuple(la["synops_mac_per_step"]))
        for la in d["layers"])
    neurons = tuple(NeuronActivity(name=x["name"], kind=x["kind"], neurons=x["neurons"],
                                   samples=n, spikes=tuple(x["spikes_per_step_total"]))
                    for x in d["neuron_layers"])
    nb = d["neurobench"]
    return ActivityReport(label=d["label"], samples=n, timesteps=d["timesteps"], layers=layers,
                          neuron_layers=neurons, parameter_count=nb["ParameterCount"],
                          parameters_nonzero=d["totals"]["parameters_nonzero"],
                          footprint_bytes=nb["Footprint"])


# --------------------------------------------------------------------------------------------
# Energy


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetEnergy:
    """One target's estimates, dense and pruned, and the profile they rest on."""

    name: str
    description: str
    profile_sha256: str
    dense: EnergyEstimate
    pruned: EnergyEstimate

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "profile_sha256": self.profile_sha256,
                "dense": self.dense.to_dict(), "pruned": self.pruned.to_dict()}


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergySection:
    """Energy per inference on every target (the run's first) and the 45 nm reference."""

    PER: ClassVar[str] = "inference: one sample, all timesteps"
    UNIT: ClassVar[str] = "J"
    CONNECTION: ClassVar[str] = CONNECTION

    target: str | None
    flags: tuple[str, ...]  # caveats of the run's target's pruned total (empty: plain fact)
    targets: tuple[TargetEnergy, ...]
    reference_dense: AnnEstimate
    reference_pruned: AnnEstimate
    not_modelled: tuple[str, ...]

    @property
    def primary(self) -> TargetEnergy | None:
        """The run's target, when it has a profile."""
        return self.targets[0] if self.targets and self.targets[0].name == self.target else None

    def _ests(self) -> list[md.TargetEstimates]:
        return [(t.name, t.dense, t.pruned) for t in self.targets]

    @property
    def summary(self) -> str:
        return md.energy_summary(self._ests(), self.reference_dense, self.reference_pruned)

    @property
    def markdown(self) -> str:
        return md.energy_markdown(self._ests(), self.reference_dense, self.reference_pruned,
                                  self.not_modelled, self.CONNECTION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "markdown": self.markdown,
            "per": self.PER,
            "unit": self.UNIT,
            "connection": self.CONNECTION,
            "target": self.target,
            "flags": list(self.flags),
            "targets": {t.name: t.to_dict() for t in self.targets},
            "reference_45nm": {"dense": self.reference_dense.to_dict(),
                               "pruned": self.reference_pruned.to_dict()},
            "not_modelled": list(self.not_modelled),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], activity: ActivitySection) -> EnergySection:
        """Read back; the 45 nm reference is recomputed from the activity it was made from."""
        names = sorted(d["targets"])
        if d["target"] in d["targets"]:
            names = [d["target"], *(n for n in names if n != d["target"])]
        return cls(target=d["target"], flags=tuple(d["flags"]),
                   targets=tuple(_target_energy(n, d["targets"][n]) for n in names),
                   reference_dense=ann_estimate(activity.dense),
                   reference_pruned=ann_estimate(activity.pruned),
                   not_modelled=tuple(d["not_modelled"]))


def target_profiles(primary: HardwareProfile | None,
                    names: Sequence[str] | None = None) -> list[HardwareProfile]:
    """The run's target first, then the shipped profiles (or ``names``) in name order."""
    out = [] if primary is None else [primary]
    for name in (available_targets() if names is None else names):
        if primary is None or name != primary.name:
            out.append(load_profile(name))
    return out


def energy_section(dense: ActivityReport, pruned: ActivityReport,
                   profiles: Sequence[HardwareProfile], *,
                   chips_used: int | None = None,
                   layer_cores: Mapping[str, int] | None = None) -> EnergySection:
    """The report's ``energy`` section: every profile in ``profiles`` (the first is the run's
    target, whose fit check's ``layer_cores`` place the step-time model's busiest core), dense
    and pruned, and the 45 nm reference."""
    targets = tuple(
        TargetEnergy(name=p.name, description=p.description, profile_sha256=p.sha256,
                     dense=estimate(dense, p, layer_cores=None if i else layer_cores),
                     pruned=estimate(pruned, p, layer_cores=None if i else layer_cores))
        for i, p in enumerate(profiles))
    not_modelled = (
        "routing hops: hop counts need a placement (Loihi's per-hop figures are in a note)",
        "static power is for one chip" + (f" (the fit check uses {chips_used})"
                                          if chips_used and chips_used > 1 else ""),
        "every neuron is charged one update per step (time-driven)",
        "the chips' synaptic operations are charged one energy per operation, graded "
        "(MAC) or not",
    )
    return EnergySection(target=profiles[0].name if profiles else None,
                         flags=targets[0].pruned.flags if targets else (), targets=targets,
                         reference_dense=ann_estimate(dense), reference_pruned=ann_estimate(pruned),
                         not_modelled=not_modelled)


def _target_energy(name: str, d: Mapping[str, Any]) -> TargetEnergy:
    profile = _shipped_profile(name)
    return TargetEnergy(name=name, description=d["description"],
                        profile_sha256=d["profile_sha256"],
                        dense=_estimate(d["dense"], profile),
                        pruned=_estimate(d["pruned"], profile))


def _shipped_profile(name: str) -> HardwareProfile | None:
    try:
        return load_profile(name)
    except SlampError:
        return None


def _figure(key: str, d: Mapping[str, Any], profile: HardwareProfile | None) -> Figure:
    """The figure a term rests on. JSON writes every value as a float, so the shipped profile's
    figure is taken when it is the same figure (``81`` renders as ``81``, not ``81.0``)."""
    fig = Figure(value=d["value"], unit=d["unit"], source=d["source"],
                 confidence=d["confidence"], note=d.get("note", ""),
                 alternatives=tuple(Alternative(**a) for a in d.get("alternatives", ())),
                 low=d.get("low"), high=d.get("high"))
    if profile is not None:
        section, field_name = key.split(".")
        shipped: Figure = getattr(getattr(profile, section), field_name)
        if _figure_key(shipped) == _figure_key(fig):
            return shipped
    return fig


def _figure_key(f: Figure) -> tuple[Any, ...]:
    """What report.json keeps of a figure (alternatives without their notes)."""
    return (f.as_float(), f.unit, f.source, f.confidence, f.note, f.low, f.high,
            tuple((a.value, a.confidence, a.source) for a in f.alternatives))


def _estimate(d: Mapping[str, Any], profile: HardwareProfile | None) -> EnergyEstimate:
    """An EnergyEstimate from its ``to_dict()``."""
    terms = tuple(EnergyTerm(t["name"], t["count"], t["count_unit"],
                             tuple((k, _figure(k, f, profile)) for k, f in t["figures"].items()),
                             t["energy_j"], t["low_j"], t["high_j"]) for t in d["terms"])
    layers = tuple(LayerEnergy(la["name"], la["synops"], la["spikes"], la["neuron_updates"],
                               la["synops_j"], la["spikes_j"], la["neuron_updates_j"])
                   for la in d["layers"])
    return EnergyEstimate(target=d["target"], label=d["label"], timesteps=d["timesteps"],
                          terms=terms, layers=layers, latency=_latency(d["latency"], profile))


def _latency(d: Mapping[str, Any] | None, profile: HardwareProfile | None
             ) -> LatencyEstimate | None:
    """A LatencyEstimate from its ``to_dict()``."""
    if d is None:
        return None
    b = d["busiest_core"]
    return LatencyEstimate(
        target=d["target"], timesteps=d["timesteps"], basis=d["basis"], step_s=d["step_s"],
        step_low_s=d["step_low_s"], step_high_s=d["step_high_s"],
        figures=tuple((k, _figure(k, f, profile)) for k, f in d["figures"].items()),
        busiest=None if b is None else BusiestCore(**b), caveats=tuple(d["caveats"]))


# --------------------------------------------------------------------------------------------
# The whole report

#: the sections later stages add, in the order report.md and the terminal show them
SECTIONS = ("fit", "activity", "energy", "export")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """Everything one run found; ``to_dict()`` is report.json."""

    slamp_deploy_version: str
    target: str
    method: str
    seed: int
    timesteps: int
    encoding: str
    readout: str
    config: Mapping[str, Any]  # the run's configuration, field by field
    model: ModelInfo
    data: DataInfo
    sparsity: SparsityInfo
    accuracy: Mapping[str, float]  # stage -> accuracy on the evaluation data
    rounds: tuple[RoundRecord, ...]
    retrain_loss_per_epoch: tuple[float, ...]
    calibration: CalibrationInfo
    layers: tuple[LayerRow, ...]
    distributed: DistributedInfo
    warnings: tuple[str, ...]
    timings_s: Mapping[str, float]
    environment: EnvironmentInfo
    fit: FitSection | None = None
    activity: ActivitySection | None = None
    energy: EnergySection | None = None
    export: ExportSection | None = None
    structure: StructureSection | None = None  # --structure only (left out of report.json)

    def _sections(self) -> Iterator[Any]:
        for key in SECTIONS:
            sec = getattr(self, key)
            if sec is not None:
                yield sec

    def section_summaries(self) -> list[str]:
        """The terminal lines of each section present, in order."""
        return [s.summary for s in self._sections()]

    def section_markdown(self) -> list[str]:
        """Each section's part of report.md, in order."""
        return [s.markdown for s in self._sections()]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in SECTIONS or f.name == "structure":
                if v is not None:
                    d[f.name] = v.to_dict()
            else:
                d[f.name] = _plain(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunReport:
        """Read a report.json written by this schema version."""
        if d.get("schema") != SCHEMA or d.get("schema_version") != SCHEMA_VERSION:
            raise ReportError(f"report.json: schema {d.get('schema')!r} version "
                              f"{d.get('schema_version')!r}; this slamp-deploy reads {SCHEMA} "
                              f"version {SCHEMA_VERSION} only")
        activity = ActivitySection.from_dict(d["activity"]) if "activity" in d else None
        energy = None
        if "energy" in d:
            if activity is None:
                raise ReportError("report.json: an energy section needs the activity section "
                                  "it was computed from")
            energy = EnergySection.from_dict(d["energy"], activity)
        return cls(
            slamp_deploy_version=d["slamp_deploy_version"], target=d["target"],
            method=d["method"], seed=d["seed"], timesteps=d["timesteps"],
            encoding=d["encoding"], readout=d["readout"], config=dict(d["config"]),
            model=ModelInfo.from_dict(d["model"]), data=DataInfo.from_dict(d["data"]),
            sparsity=SparsityInfo.from_dict(d["sparsity"]), accuracy=dict(d["accuracy"]),
            rounds=tuple(RoundRecord.from_dict(r) for r in d["rounds"]),
            retrain_loss_per_epoch=tuple(d["retrain_loss_per_epoch"]),
            calibration=CalibrationInfo.from_dict(d["calibration"]),
            layers=tuple(LayerRow.from_dict(r) for r in d["layers"]),
            distributed=DistributedInfo.from_dict(d["distributed"]),
            warnings=tuple(d["warnings"]), timings_s=dict(d["timings_s"]),
            environment=EnvironmentInfo.from_dict(d["environment"]),
            fit=FitSection.from_dict(d["fit"]) if "fit" in d else None,
            activity=activity, energy=energy,
            export=ExportSection.from_dict(d["export"]) if "export" in d else None,
            structure=StructureSection.from_dict(d["structure"]) if "structure" in d else None)


def report_json(report: RunReport) -> str:
    """report.json's text, strict JSON (``allow_nan=False``): a non-finite number, which JSON
    cannot hold (Python would write ``NaN`` or ``Infinity``, which most readers refuse), is
    written as null, and one entry in ``warnings`` names the fields."""
    bad: list[str] = []
    clean = _finite(report.to_dict(), "", bad)
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        clean["warnings"] = [*clean.get("warnings", ()),
                             f"report.json: {len(bad)} non-finite number(s) written as null: "
                             f"{', '.join(bad[:5])}{more}; check the inputs they came from"]
    return json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _finite(v: Any, where: str, bad: list[str]) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        bad.append(where or "<root>")
        return None
    if isinstance(v, Mapping):
        return {k: _finite(x, f"{where}.{k}" if where else str(k), bad) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x, f"{where}[{i}]", bad) for i, x in enumerate(v)]
    return v
