"""Energy per inference from exact activity counts and a chip profile's published figures.

For a target chip (the event-level template of hardware.md 11.3)::

    E = SynOps x E_synop + spikes x E_spike + neuron updates x E_update + P_static x duration

with ``duration`` the latency per inference of ``slamp_deploy.measure.latency`` (a fixed tick, or
the step-time model for Loihi 2, times the timesteps; one chip). Every term names the profile
figures it rests on, with their source and confidence, and carries a central value and a low/high
bound (a figure's ``low``/``high``, the value itself where the source gives no bound). A term
whose figure is unknown is *omitted and flagged* (the total is then a partial sum, a lower bound
of the model); a term resting on an unverified (``U``) figure is computed but flagged, and so is
every total that includes it. Routing hops are not modelled (hop counts need a placement; Loihi's
per-hop figures live in a note). SynOps count only the kept (non-zero) synapses: pruning saves
them on a chip only when the deployment skips zeros, as the Lava export's ``Sparse`` connections
do (:data:`CONNECTION`).

Beside it, the 45 nm reference every SNN paper uses (Horowitz, ISSCC 2014, as tabulated in
hardware.md 11.1): an ANN of the same shape at ``MACs x 4.6 pJ`` (fp32 MAC), and the SNN itself at
``Effective_MACs x 4.6 pJ + Effective_ACs x 0.9 pJ`` (fp32 AC), the syops-counter recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from slamp_deploy.chips.figure import CONFIDENCES, Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.measure.activity import ActivityReport
from slamp_deploy.measure.latency import (
    BusiestCore,
    LatencyEstimate,
    busiest_core,
    figure_dict,
    latency,
)

__all__ = ["ANN_45NM", "CONNECTION", "TERMS", "AnnEstimate", "EnergyEstimate", "EnergyTerm",
           "LayerEnergy", "ReferenceFigure", "ann_estimate", "energy_caveat", "estimate",
           "estimate_counts", "format_energy", "format_range"]

#: the terms of the template, in order: (name, profile figure, what is counted)
TERMS: tuple[tuple[str, str, str], ...] = (
    ("synops", "energy.synop_pj", "synaptic operations (Effective_ACs + Effective_MACs)"),
    ("spikes", "energy.spike_pj", "spikes sent"),
    ("neuron_updates", "energy.neuron_update_pj", "neuron updates (every neuron, every step)"),
    ("static", "energy.static_w", "static power x latency per inference (one chip)"),
)
#: the connection type the SynOps term assumes (the Lava export's, exporters/lava_runner.py)
CONNECTION = ("pruned synapses are charged nothing: the estimate assumes a connection that skips "
              "zero weights, as the Lava export's lava.proc.sparse.process.Sparse (scipy CSR, "
              "zeros eliminated) does; Lava's Dense keeps zero weights on the chip, and a Dense "
              "deployment pays the dense SynOps")
#: what an omitted term would take, per term
NEEDS = {
    "synops": "a published energy per synaptic operation, or a measured run with activity counts "
              "to fit one (as docs/energy-validation.md does for Loihi 2)",
    "spikes": "a published energy per spike sent (or routed)",
    "neuron_updates": "a published energy per neuron update",
    "static": "a published static power and a step time (a fixed tick or a step-time model)",
    "static_time": "a step time: a fixed tick, a step-time model, or the inference's measured "
                   "wall time (the static power itself is published)",
}


def _needs(term: EnergyTerm) -> str:
    if term.name == "static" and "energy.static_w" not in term.missing:
        return NEEDS["static_time"]
    return NEEDS.get(term.name, "")
#: confidences that make a figure "unverified": computed, but flagged in every output
UNVERIFIED = frozenset({"U"})


@dataclass(frozen=True)
class ReferenceFigure:
    """A constant that is not part of a chip profile (the 45 nm table)."""

    value: float
    unit: str
    source: str
    confidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source,
                "confidence": self.confidence}


_HOROWITZ = ("Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm, 0.9 V), as tabulated "
             "in hardware.md 11.1")
ANN_45NM: dict[str, ReferenceFigure] = {
    "mac_pj": ReferenceFigure(4.6, "pJ", f"fp32 mult 3.7 pJ + fp32 add 0.9 pJ; {_HOROWITZ}", "D"),
    "ac_pj": ReferenceFigure(0.9, "pJ", f"fp32 add 0.9 pJ; {_HOROWITZ}", "D"),
}


def _weakest(confidences: Iterable[str]) -> str:
    cs = list(confidences)
    return max(cs, key=CONFIDENCES.index) if cs else "unknown"


@dataclass(frozen=True)
class EnergyTerm:
    """One term of the template for the whole model, per inference."""

    name: str  # synops | spikes | neuron_updates | static
    count: float | None  # events per inference (static: seconds; None when unknown)
    count_unit: str  # "events" or "s"
    figures: tuple[tuple[str, Figure], ...]  # (dotted profile field, figure) it rests on
    energy_j: float | None  # None: omitted (a figure is unknown)
    low_j: float | None = None  # bounds (None with energy_j)
    high_j: float | None = None

    @property
    def confidence(self) -> str:
        """The weakest confidence among the known figures the term rests on (an unknown
        figure beside known ones, e.g. a step floor, is not used)."""
        known = [f.confidence for _, f in self.figures if f.as_float() is not None]
        return _weakest(known) if known else "unknown"

    @property
    def omitted(self) -> bool:
        return self.energy_j is None

    @property
    def unverified(self) -> bool:
        return not self.omitted and any(f.confidence in UNVERIFIED for _, f in self.figures)

    @property
    def missing(self) -> tuple[str, ...]:
        """Dotted fields of the unknown figures that made the term omitted (empty when the
        term was computed)."""
        if not self.omitted:
            return ()
        return tuple(k for k, f in self.figures if f.as_float() is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "count": self.count, "count_unit": self.count_unit,
            "energy_j": self.energy_j, "low_j": self.low_j, "high_j": self.high_j,
            "omitted": self.omitted, "unverified": self.unverified,
            "confidence": self.confidence, "missing": list(self.missing),
            "needs": _needs(self) if self.omitted else "",
            "figures": {k: figure_dict(f) for k, f in self.figures},
        }


@dataclass(frozen=True)
class LayerEnergy:
    """The event terms of one synaptic layer and the neurons it drives (static is chip-wide)."""

    name: str
    synops: float
    spikes: float
    neuron_updates: int
    synops_j: float | None
    spikes_j: float | None
    neuron_updates_j: float | None

    @property
    def energy_j(self) -> float | None:
        """Sum of the known terms (None when none is known)."""
        parts = [v for v in (self.synops_j, self.spikes_j, self.neuron_updates_j) if v is not None]
        return sum(parts) if parts else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "synops": self.synops, "spikes": self.spikes,
                "neuron_updates": self.neuron_updates, "synops_j": self.synops_j,
                "spikes_j": self.spikes_j, "neuron_updates_j": self.neuron_updates_j,
                "energy_j": self.energy_j}


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per inference (one sample, all timesteps) of one activity on one target."""

    target: str
    label: str  # the activity's label: dense | pruned
    timesteps: int
    terms: tuple[EnergyTerm, ...]
    layers: tuple[LayerEnergy, ...]
    latency: LatencyEstimate | None = None

    @property
    def total_j(self) -> float | None:
        """Sum of the terms that could be computed; None when none could."""
        known = [t.energy_j for t in self.terms if t.energy_j is not None]
        return sum(known) if known else None

    @property
    def low_j(self) -> float | None:
        """Sum of the computed terms' low bounds."""
        known = [t.low_j for t in self.terms if t.low_j is not None]
        return sum(known) if known else None

    @property
    def high_j(self) -> float | None:
        """Sum of the computed terms' high bounds (of the computed terms only when partial)."""
        known = [t.high_j for t in self.terms if t.high_j is not None]
        return sum(known) if known else None

    @property
    def needs(self) -> tuple[str, ...]:
        """What each omitted term would take (one phrase per omitted term)."""
        return tuple(f"{t.name}: {_needs(t)}" for t in self.terms if t.omitted)

    @property
    def omitted(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms if t.omitted)

    @property
    def unverified(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms if t.unverified)

    @property
    def status(self) -> str:
        """``complete``, ``partial`` (some terms omitted: a lower bound) or ``unknown``."""
        if self.total_j is None:
            return "unknown"
        return "partial" if self.omitted else "complete"

    @property
    def confidence(self) -> str:
        """Weakest confidence among the figures of the terms that were computed."""
        return _weakest(t.confidence for t in self.terms if not t.omitted)

    @property
    def missing(self) -> tuple[str, ...]:
        out: list[str] = []
        for t in self.terms:
            out += [m for m in t.missing if m not in out]
        return tuple(out)

    @property
    def flags(self) -> tuple[str, ...]:
        """Every caveat of the total, one short phrase each (empty: plain fact)."""
        out = []
        if self.status == "unknown":
            out.append("unknown: no term could be computed (" + ", ".join(self.missing)
                       + " unknown)")
        elif self.omitted:
            out.append(f"partial, a lower bound: {', '.join(self.omitted)} omitted ("
                       + ", ".join(self.missing) + " unknown)")
        if self.unverified:
            out.append(f"unverified: {', '.join(self.unverified)} rest(s) on U figures")
        return tuple(out)

    @property
    def plain(self) -> bool:
        """True only when the total may be shown as plain fact (complete, nothing unverified)."""
        return not self.flags

    def caveat(self) -> str:
        """A short tag for a displayed total: '' or e.g. '(partial; rests on unverified)'."""
        tags = []
        if self.status == "partial":
            tags.append("partial, lower bound")
        if self.unverified:
            tags.append("rests on unverified figures")
        return f"({'; '.join(tags)})" if tags else ""

    def range(self) -> str:
        """`` [0.79-2.79 mJ]`` (the low and high bounds), or ``""`` when they equal the total."""
        if self.total_j is None or self.low_j is None or self.high_j is None:
            return ""
        if self.low_j == self.high_j == self.total_j:
            return ""
        return f" [{format_range(self.low_j, self.high_j)}]"

    def display(self) -> str:
        """The total for a person: value, range and caveat, or 'unknown'."""
        if self.total_j is None:
            return "unknown"
        prefix = ">= " if self.status == "partial" else ""
        tail = self.caveat()
        return (f"{prefix}{format_energy(self.total_j)}{self.range()}"
                + (f" {tail}" if tail else ""))

    def short(self) -> str:
        """The total with its range and one-word caveats, e.g. ``1.81 mJ [0.79-2.79 mJ]``,
        ``>= 2.61 uJ (partial)`` or ``unknown``."""
        if self.total_j is None:
            return "unknown"
        tags = energy_caveat(self)
        prefix = ">= " if self.status == "partial" else ""
        return (f"{prefix}{format_energy(self.total_j)}{self.range()}"
                + (f" ({', '.join(tags)})" if tags else ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "label": self.label, "timesteps": self.timesteps,
            "total_j": self.total_j, "low_j": self.low_j, "high_j": self.high_j,
            "status": self.status, "confidence": self.confidence,
            "plain": self.plain, "flags": list(self.flags), "omitted": list(self.omitted),
            "unverified": list(self.unverified), "missing": list(self.missing),
            "needs": list(self.needs), "display": self.display(),
            "latency": None if self.latency is None else self.latency.to_dict(),
            "terms": [t.to_dict() for t in self.terms],
            "layers": [la.to_dict() for la in self.layers],
        }


def energy_caveat(est: EnergyEstimate) -> tuple[str, ...]:
    """The one-word caveats of a displayed total: ``partial`` (a lower bound) and/or
    ``unverified``; empty when the total is plain fact. Every short label (terminal, report.md,
    plots, cards) is built from these words."""
    return (("partial",) if est.status == "partial" else ()) + (
        ("unverified",) if est.unverified else ())


def _term(name: str, count: float, key: str, fig: Figure, scale: float = 1e-12) -> EnergyTerm:
    """An event term: count x figure, with the figure's bounds."""
    b = fig.bounds()
    if b is None:
        return EnergyTerm(name, count, "events", ((key, fig),), None)
    return EnergyTerm(name, count, "events", ((key, fig),), count * (fig.as_float() or 0.0)
                      * scale, count * b[0] * scale, count * b[1] * scale)


def _static_term(static: Figure, lat: LatencyEstimate) -> EnergyTerm:
    """Static power x latency per inference; omitted when either is unknown."""
    figures = (("energy.static_w", static), *lat.figures)
    b, w = static.bounds(), static.as_float()
    if b is None or w is None or lat.total_s is None:
        return EnergyTerm("static", lat.total_s, "s", figures, None)
    lo = lat.low_s if lat.low_s is not None else lat.total_s
    hi = lat.high_s if lat.high_s is not None else lat.total_s
    return EnergyTerm("static", lat.total_s, "s", figures, w * lat.total_s, b[0] * lo, b[1] * hi)


def _energy(count: float, fig: Figure, scale: float = 1e-12) -> float | None:
    v = fig.as_float()
    return None if v is None else count * v * scale


def estimate_counts(profile: HardwareProfile, *, synops: float, spikes: float,
                    neuron_updates: float, timesteps: int, busiest: BusiestCore | None,
                    label: str = "counts") -> EnergyEstimate:
    """Energy per inference from bare counts per inference (a published workload, e.g. the
    PilotNet-SNN validation), with no per-layer breakdown."""
    e = profile.energy
    lat = latency(profile, timesteps, busiest)
    terms = (_term("synops", synops, "energy.synop_pj", e.synop_pj),
             _term("spikes", spikes, "energy.spike_pj", e.spike_pj),
             _term("neuron_updates", float(neuron_updates), "energy.neuron_update_pj",
                   e.neuron_update_pj),
             _static_term(e.static_w, lat))
    return EnergyEstimate(target=profile.name, label=label, timesteps=timesteps, terms=terms,
                          layers=(), latency=lat)


def estimate(activity: ActivityReport, profile: HardwareProfile, *,
             layer_cores: Mapping[str, int] | None = None) -> EnergyEstimate:
    """Energy per inference of ``activity`` on ``profile`` (see the module docstring);
    ``layer_cores`` (layer -> cores, from the fit check) places the step-time model's busiest
    core."""
    e, T = profile.energy, activity.timesteps
    busiest = busiest_core(activity.layers, T, profile, layer_cores)
    base = estimate_counts(profile, synops=activity.synops, spikes=activity.spikes,
                           neuron_updates=activity.neuron_updates, timesteps=T,
                           busiest=busiest, label=activity.label)
    layers = []
    for la in activity.layers:
        n = activity.neuron_layer(la.neuron) if la.neuron is not None else None
        sp = n.spikes_per_sample if n is not None else 0.0
        nu = n.neuron_updates if n is not None else 0
        layers.append(LayerEnergy(
            name=la.name, synops=la.synops, spikes=sp, neuron_updates=nu,
            synops_j=_energy(la.synops, e.synop_pj), spikes_j=_energy(sp, e.spike_pj),
            neuron_updates_j=_energy(nu, e.neuron_update_pj)))
    attached = {la.neuron for la in activity.layers}
    for n in activity.neuron_layers:  # neurons no synaptic layer drives (e.g. on the input)
        if n.name not in attached:
            layers.append(LayerEnergy(
                name=n.name, synops=0.0, spikes=n.spikes_per_sample,
                neuron_updates=n.neuron_updates, synops_j=None if e.synop_pj.as_float() is None
                else 0.0, spikes_j=_energy(n.spikes_per_sample, e.spike_pj),
                neuron_updates_j=_energy(n.neuron_updates, e.neuron_update_pj)))
    return EnergyEstimate(target=profile.name, label=activity.label, timesteps=T,
                          terms=base.terms, layers=tuple(layers), latency=base.latency)


@dataclass(frozen=True)
class AnnEstimate:
    """The 45 nm reference: an ANN of the same shape, and the SNN counted the same way."""

    ann_macs: int  # one inference of the ANN
    effective_macs: float
    effective_acs: float
    layers: tuple[tuple[str, int, float, float], ...]  # (name, ann_macs, eff_macs, eff_acs)

    @property
    def ann_j(self) -> float:
        return self.ann_macs * ANN_45NM["mac_pj"].value * 1e-12

    @property
    def snn_j(self) -> float:
        return (self.effective_macs * ANN_45NM["mac_pj"].value
                + self.effective_acs * ANN_45NM["ac_pj"].value) * 1e-12

    def layer_j(self) -> list[tuple[str, float, float]]:
        """(name, ANN energy, SNN energy) per layer."""
        mac, ac = ANN_45NM["mac_pj"].value, ANN_45NM["ac_pj"].value
        return [(n, a * mac * 1e-12, (m * mac + c * ac) * 1e-12) for n, a, m, c in self.layers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "constants": {k: f.to_dict() for k, f in ANN_45NM.items()},
            "ann_macs": self.ann_macs, "effective_macs": self.effective_macs,
            "effective_acs": self.effective_acs, "ann_j": self.ann_j, "snn_j": self.snn_j,
            "layers": [{"name": n, "ann_j": a, "snn_j": s} for n, a, s in self.layer_j()],
        }


def ann_estimate(activity: ActivityReport) -> AnnEstimate:
    return AnnEstimate(
        ann_macs=activity.ann_macs, effective_macs=activity.effective_macs,
        effective_acs=activity.effective_acs,
        layers=tuple((la.name, la.synapses_total, la.effective_macs, la.effective_acs)
                     for la in activity.layers))


def format_range(lo: float, hi: float) -> str:
    """``0.79-2.79 mJ``: both bounds in the high bound's unit."""
    hi_s = format_energy(hi)
    unit = hi_s.split(" ")[1] if " " in hi_s else "J"
    scale = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12, "fJ": 1e-15}[unit]
    return f"{lo / scale:.3g}-{hi_s}"


def format_energy(j: float) -> str:
    """Joules with an SI prefix and 3 significant digits, e.g. ``12.3 uJ``."""
    if j == 0:
        return "0 J"
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j / 1e-15:.3g} fJ"
