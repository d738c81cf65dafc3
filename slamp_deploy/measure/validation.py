"""The energy model checked against measured chip runs: lava-dl's PilotNet-SNN on Loihi 2.

The only public Loihi 2 workload with both measured energy and published activity counts
(``../shared/research/energy.md`` 1.2, 2.2): the printed outputs of every commit of lava-dl's
``tutorials/lava/lib/dl/netx/pilotnet_{snn,sdnn}/benchmark.ipynb`` (rail power from the Loihi 2
power profiler, frames per second) and the activity counters read off its profiler plots. This
module holds those published numbers, each with its source, feeds the counts to
:func:`slamp_deploy.measure.energy.estimate_counts` with the shipped ``loihi2`` profile, and
compares the prediction with the spread of the measured runs. It also computes where the model is
weak: the update/synop split the data cannot separate, and host-fed (I/O-bound) runs.
``scripts/energy_validation.py`` renders the result as ``docs/energy-validation.md``;
``tests/test_energy_validation.py`` holds the prediction to the measured spread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.toml import load_profile
from slamp_deploy.measure.energy import EnergyEstimate, estimate_counts
from slamp_deploy.measure.latency import BusiestCore

__all__ = ["PILOTNET", "SDNN_RUNS", "SNN_RUNS", "MeasuredRun", "PilotNetCheck", "Workload",
           "pilotnet_check"]

_LDL = ("lava-nc/lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb, printed "
        "output at commit")
_LDL_SDNN = _LDL.replace("pilotnet_snn", "pilotnet_sdnn")


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasuredRun:
    """One measured run: frames per second and per-chip rail power, as printed (V)."""

    commit: str
    date: str
    board: str  # OG: Oheo Gulch (1 chip); KP: Kapoho Point (8 chips, compensated to one)
    fps: float
    total_w: float
    dynamic_w: float
    static_w: float
    source: str
    suspect: str = ""  # why the run is left out of the spread ("" when it is in)

    @property
    def total_j(self) -> float:
        """Energy per inference (one frame): total power / frames per second (D)."""
        return self.total_w / self.fps

    @property
    def dynamic_j(self) -> float:
        return self.dynamic_w / self.fps

    @property
    def inference_s(self) -> float:
        return 1.0 / self.fps


def _snn(commit: str, date: str, board: str, fps: float, tw: float, dw: float, sw: float,
         suspect: str = "") -> MeasuredRun:
    return MeasuredRun(commit=commit, date=date, board=board, fps=fps, total_w=tw, dynamic_w=dw,
                       static_w=sw, source=f"{_LDL} {commit}", suspect=suspect)


#: PilotNet-SNN on Loihi 2, every commit of the notebook (energy.md 1.2)
SNN_RUNS: tuple[MeasuredRun, ...] = (
    _snn("76c8fbb", "2022-10-25", "OG", 415.51, 0.4117, 0.2336, 0.1781,
         suspect="predates the updated power-profiler API (b5200e2); its rails read about half "
                 "of the later runs"),
    _snn("b5200e2", "2022-10-28", "OG", 414.72, 0.7886, 0.4069, 0.3817),
    _snn("1878d6d", "2022-10-28", "OG", 413.76, 0.7524, 0.4430, 0.3094),
    _snn("6b752b7", "2023-01-10", "OG", 408.91, 0.6792, 0.4472, 0.2321),
    _snn("f49e18b", "2022-10-12", "KP", 343.34, 0.7702, 0.4116, 0.3586),
    _snn("12f0402", "2022-10-12", "KP", 342.29, 0.8263, 0.4743, 0.3521),
)
#: PilotNet-SDNN (host-fed frames: I/O-bound), the runs with the standard rail mapping
SDNN_RUNS: tuple[MeasuredRun, ...] = tuple(
    MeasuredRun(commit=c, date=d, board=b, fps=f, total_w=tw, dynamic_w=dw, static_w=sw,
                source=f"{_LDL_SDNN} {c}")
    for c, d, b, f, tw, dw, sw in (
        ("6b752b7", "2023-01-10", "OG", 16.87, 0.2757, -0.0061, 0.2818),
        ("1878d6d", "2022-10-28", "OG", 11.18, 0.3572, 0.0150, 0.3422),
        ("b5200e2", "2022-10-28", "OG", 14.22, 0.3636, 0.0091, 0.3545),
        ("76c8fbb", "2022-10-25", "OG", 15.29, 0.1798, 0.0119, 0.1679),
        ("f49e18b", "2022-10-12", "KP", 11.73, 0.3855, 0.0336, 0.3519),
    ))


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Published activity of one workload: profiler totals over ``run_steps`` (D: digitised
    from the notebook's plots, +-5-10 %), and the toolkit's neuron count."""

    name: str
    neurons: int
    steps_per_inference: int
    run_steps: int
    syn_ops: float
    dendrite_updates: float
    axon_out: float
    busiest_core_syn_ops: float  # over the run, on the busiest core
    busiest_core: str
    source: str

    def per_inference(self, total: float) -> float:
        return total / self.run_steps * self.steps_per_inference

    @property
    def busiest(self) -> BusiestCore:
        return BusiestCore(layer=self.busiest_core,
                           synops_per_step=self.busiest_core_syn_ops / self.run_steps, cores=1,
                           cores_from="published profiler counts")


PILOTNET = Workload(
    name="PilotNet-SNN (lava-dl, LIF, 200x66x3 input, 5 conv + 4 dense, 74 cores, 1 chip)",
    neurons=158_509, steps_per_inference=16, run_steps=10_000, syn_ops=2.29e10,
    dendrite_updates=3.70e9, axon_out=4.28e8, busiest_core_syn_ops=1.51e9,
    busiest_core="layer 3 (cores 20-22)",
    source="Loihi2Activity counters syn_ops, dendrite_updates, axon_out per core, read off the "
           "profiler plots of pilotnet_snn/benchmark.ipynb (identical across runs); "
           "../shared/research/energy.md 2.2")


@dataclass(frozen=True, slots=True, kw_only=True)
class PilotNetCheck:
    """The prediction for PilotNet-SNN, the measured spread it is held to, and the weak spots."""

    profile: HardwareProfile
    estimate: EnergyEstimate
    runs: tuple[MeasuredRun, ...]  # the consistent ones
    loihi1: EnergyEstimate  # Davies 2018's Loihi 1 figures, unfitted, with a measured step
    loihi1_static_w: float
    measured_step_s: float  # the HEAD run's, for the Loihi 1 scenario
    split_alt: EnergyEstimate  # the other update/synop prior (Loihi 1 inactive ratio)
    split_alt_pj: tuple[float, float]  # (synop, update) under that prior
    pruned_keep: float
    pruned: EnergyEstimate  # the same network with 10 % of its SynOps, central split
    pruned_alt: EnergyEstimate  # ... with the other split
    sdnn_synops_per_step: float
    sdnn_compute_step_s: float  # the model's step if every SDNN SynOp sat on one core (a bound)

    def spread(self, what: str) -> tuple[float, float]:
        vals = [getattr(r, what) for r in self.runs]
        return min(vals), max(vals)

    @property
    def dynamic_j(self) -> float:
        return dynamic_j(self.estimate)


def dynamic_j(est: EnergyEstimate) -> float:
    """The activity terms (SynOps, spikes, updates) of an estimate."""
    return sum(t.energy_j or 0.0 for t in est.terms if t.name != "static")


def _with_energy(p: HardwareProfile, **figs: Figure) -> HardwareProfile:
    return dataclasses.replace(p, energy=dataclasses.replace(p.energy, **figs))


def _fig(value: float, unit: str, conf: str, source: str) -> Figure:
    return Figure(value=value, unit=unit, source=source, confidence=conf)


def _run(p: HardwareProfile, w: Workload, keep: float = 1.0) -> EnergyEstimate:
    b = w.busiest
    return estimate_counts(
        p, synops=w.per_inference(w.syn_ops) * keep, spikes=w.per_inference(w.axon_out),
        neuron_updates=w.neurons * w.steps_per_inference, timesteps=w.steps_per_inference,
        busiest=dataclasses.replace(b, synops_per_step=b.synops_per_step * keep),
        label=w.name)


def pilotnet_check(profile: HardwareProfile | None = None) -> PilotNetCheck:
    """Feed PilotNet-SNN's published counts to the energy model on ``profile`` (the shipped
    ``loihi2`` by default) and collect the comparisons the validation page shows."""
    p = profile or load_profile("loihi2")
    w = PILOTNET
    runs = tuple(r for r in SNN_RUNS if not r.suspect)
    head = next(r for r in SNN_RUNS if r.commit == "6b752b7")
    step = head.inference_s / w.steps_per_inference
    # Scenario A (energy.md 3): Loihi 1's figures as shipped, Loihi 2's measured static and step
    l1 = load_profile("loihi")
    tick = _fig(step, "s", "V", f"{head.source}: 1 / ({head.fps} fps x 16 steps)")
    unknown = Figure(value=None, unit="s", source="not used", confidence="unknown")
    a = dataclasses.replace(
        _with_energy(l1, static_w=_fig(head.static_w, "W", "V", head.source)),
        timing=dataclasses.replace(l1.timing, timestep_s=tick, step_floor_s=unknown,
                                   synop_time_s=unknown))
    # the other prior on the update/synop ratio, solved on the same dynamic energy as the shipped
    # pair: E_syn * N_syn + r * E_syn * N_upd = shipped dynamic (Loihi 1 inactive: 52 / 23.6)
    est = _run(p, w)
    r = 52 / 23.6
    n_syn, n_upd = w.per_inference(w.syn_ops), w.neurons * w.steps_per_inference
    spikes_j = next(t.energy_j or 0.0 for t in est.terms if t.name == "spikes")
    syn_alt = (dynamic_j(est) - spikes_j) / (n_syn + r * n_upd) * 1e12
    alt = _with_energy(p, synop_pj=_fig(syn_alt, "pJ", "D", "inactive-ratio prior"),
                       neuron_update_pj=_fig(r * syn_alt, "pJ", "D", "inactive-ratio prior"))
    keep = 0.1
    sdnn_synops = 5.9e5  # per step, energy.md 2.2
    return PilotNetCheck(
        profile=p, estimate=est, runs=runs, loihi1=_run(a, w), loihi1_static_w=head.static_w,
        measured_step_s=step, split_alt=_run(alt, w), split_alt_pj=(syn_alt, r * syn_alt),
        pruned_keep=keep, pruned=_run(p, w, keep), pruned_alt=_run(alt, w, keep),
        sdnn_synops_per_step=sdnn_synops,
        sdnn_compute_step_s=max(p.timing.step_floor_s.as_float() or 0.0,
                                (p.timing.synop_time_s.bounds() or (0.0, 0.0))[1]
                                * sdnn_synops))
