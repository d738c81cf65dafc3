"""Latency per inference on a target: the time of one step from the profile's ``[timing]``
section, times the timesteps, with a central value and a low/high bound.

Two bases, in this order (``hardware_profiles/SCHEMA.md``, ``[timing]``):

* **step-time model** (barrier-synchronised chips such as Loihi 2, ``../shared/research/
  energy.md`` 2.3): ``t_step = max(step_floor_s, synop_time_s x SynOps per step on the busiest
  core)``. The busiest core is found per synaptic layer: its SynOps per step spread evenly over
  the layer's cores (the fit check's count when given, else ``ceil(neurons / core.neurons_max)``,
  else one core). The model is compute-bound: a host-fed (I/O-bound) run takes far longer.
* **fixed tick** (``timing.timestep_s``: TrueNorth's 1 kHz clock, SpiNNaker's 1 ms real time).

Neither known: the latency is unknown, and so is the static energy that rests on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slamp_deploy.chips.figure import CONFIDENCES, Figure
from slamp_deploy.chips.profile import HardwareProfile

__all__ = ["BusiestCore", "LatencyEstimate", "busiest_core", "figure_dict", "format_time",
           "latency"]

MODEL = "step-time model"
TICK = "fixed tick"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class BusiestCore:
    """The core the step-time model charges: which layer, its SynOps per step, over how many
    cores, and where that core count came from."""

    layer: str
    synops_per_step: float  # on that one core (the layer's per-step SynOps / its cores)
    cores: int
    cores_from: str  # "fit check" | "core.neurons_max" | "one core (no per-core limit)" | given

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "synops_per_step": self.synops_per_step,
                "cores": self.cores, "cores_from": self.cores_from}


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyEstimate:
    """Time per inference (one sample, all timesteps) on one target."""

    target: str
    timesteps: int
    basis: str  # MODEL | TICK | UNKNOWN
    step_s: float | None
    step_low_s: float | None
    step_high_s: float | None
    figures: tuple[tuple[str, Figure], ...]  # the timing figures the step rests on
    busiest: BusiestCore | None = None
    caveats: tuple[str, ...] = ()

    @property
    def total_s(self) -> float | None:
        return None if self.step_s is None else self.timesteps * self.step_s

    @property
    def low_s(self) -> float | None:
        return None if self.step_low_s is None else self.timesteps * self.step_low_s

    @property
    def high_s(self) -> float | None:
        return None if self.step_high_s is None else self.timesteps * self.step_high_s

    @property
    def confidence(self) -> str:
        """The weakest confidence among the known figures the step rests on."""
        cs = [f.confidence for _, f in self.figures if f.as_float() is not None]
        return max(cs, key=CONFIDENCES.index) if cs else "unknown"

    def display(self) -> str:
        """``2.42 ms [2.42-2.92 ms] per inference (step-time model, D)`` or ``unknown``."""
        if self.total_s is None:
            return "unknown"
        rng = ""
        if self.low_s is not None and self.high_s is not None and self.low_s != self.high_s:
            rng = f" [{format_time(self.low_s)}-{format_time(self.high_s)}]"
        return f"{format_time(self.total_s)}{rng} ({self.basis}, {self.confidence})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "timesteps": self.timesteps, "basis": self.basis,
            "step_s": self.step_s, "step_low_s": self.step_low_s,
            "step_high_s": self.step_high_s, "total_s": self.total_s, "low_s": self.low_s,
            "high_s": self.high_s, "confidence": self.confidence, "display": self.display(),
            "figures": {k: figure_dict(f) for k, f in self.figures},
            "busiest_core": None if self.busiest is None else self.busiest.to_dict(),
            "caveats": list(self.caveats),
        }


def figure_dict(f: Figure) -> dict[str, Any]:
    """A figure as report.json writes it (energy and timing terms alike)."""
    d: dict[str, Any] = {"value": f.as_float(), "unit": f.unit, "confidence": f.confidence,
                         "source": f.source}
    if f.low is not None:
        d["low"] = f.low
    if f.high is not None:
        d["high"] = f.high
    if f.note:
        d["note"] = f.note
    if f.alternatives:
        d["alternatives"] = [{"value": a.value, "confidence": a.confidence, "source": a.source}
                             for a in f.alternatives]
    return d


def busiest_core(layers: Any, timesteps: int, profile: HardwareProfile,
                 layer_cores: Mapping[str, int] | None = None) -> BusiestCore | None:
    """The busiest core of ``layers`` (``LayerActivity``-like: name, synops per inference,
    neurons) on ``profile``; ``None`` when there is no synaptic layer."""
    per_core = profile.core.neurons_max.as_int()
    best: BusiestCore | None = None
    for la in layers:
        if layer_cores and layer_cores.get(la.name):
            cores, src = int(layer_cores[la.name]), "fit check"
        elif per_core:
            cores, src = max(1, math.ceil(la.neurons / per_core)), "core.neurons_max"
        else:
            cores, src = 1, "one core (no per-core limit known)"
        load = la.synops / max(timesteps, 1) / cores
        if best is None or load > best.synops_per_step:
            best = BusiestCore(layer=la.name, synops_per_step=load, cores=cores, cores_from=src)
    return best


def latency(profile: HardwareProfile, timesteps: int, busiest: BusiestCore | None
            ) -> LatencyEstimate:
    """The latency of ``timesteps`` steps on ``profile`` (see the module docstring)."""
    t = profile.timing
    syn, floor, tick = t.synop_time_s, t.step_floor_s, t.timestep_s
    if syn.as_float() is not None:
        load = 0.0 if busiest is None else busiest.synops_per_step
        sb = syn.bounds() or (0.0, 0.0)
        fb = floor.bounds() or (0.0, 0.0)
        central = max(floor.as_float() or 0.0, (syn.as_float() or 0.0) * load)
        caveats = ["compute-bound: a host-fed (I/O-bound) run takes far longer "
                   "(timing.synop_time_s note)"]
        if floor.as_float() is None:
            caveats.append("timing.step_floor_s unknown: no floor under a tiny network's step "
                           "(a lower bound)")
        return LatencyEstimate(
            target=profile.name, timesteps=timesteps, basis=MODEL, step_s=central,
            step_low_s=max(fb[0], sb[0] * load), step_high_s=max(fb[1], sb[1] * load),
            figures=(("timing.step_floor_s", floor), ("timing.synop_time_s", syn)),
            busiest=busiest, caveats=tuple(caveats))
    b = tick.bounds()
    if b is not None:
        return LatencyEstimate(target=profile.name, timesteps=timesteps, basis=TICK,
                               step_s=tick.as_float(), step_low_s=b[0], step_high_s=b[1],
                               figures=(("timing.timestep_s", tick),))
    return LatencyEstimate(
        target=profile.name, timesteps=timesteps, basis=UNKNOWN, step_s=None, step_low_s=None,
        # figures in name order: report.json sorts its keys, and reading it back keeps that order
        step_high_s=None, figures=(("timing.synop_time_s", syn), ("timing.timestep_s", tick)),
        caveats=("no fixed tick and no step-time model published: it would take a measured "
                 "step time (or time per synop per core) for this chip",))


def format_time(s: float) -> str:
    """Seconds with an SI prefix and 3 significant digits, e.g. ``183 us``."""
    if s == 0:
        return "0 s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-12:.3g} ps"
