"""The library side of ``slamp-deploy energy``: measure a model's activity once and estimate its
energy per inference on several targets, beside the 45 nm ANN/SNN reference.

The model is measured as it is (a pruned checkpoint's zeros count as pruned synapses) on the
evaluation part of the data, split exactly as a run splits it, so the figures match the
``energy`` section of a run with the same model, data and seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slamp_deploy.chips.toml import load_profile
from slamp_deploy.config import PipelineConfig
from slamp_deploy.measure.activity import ActivityReport, measure
from slamp_deploy.measure.energy import AnnEstimate, EnergyEstimate, ann_estimate, estimate
from slamp_deploy.pipeline.run import prepare


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyRow:
    """One target's estimate."""

    target: str  # the profile's name
    estimate: EnergyEstimate


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyComparison:
    """The measured activity, one row per target in the order asked, and the 45 nm reference."""

    activity: ActivityReport
    rows: tuple[EnergyRow, ...]
    reference: AnnEstimate


def measure_model(cfg: PipelineConfig) -> ActivityReport:
    """Load the model and data ``cfg`` names and measure the evaluation part."""
    cfg.validate()
    _loaded, graph, parts, T = prepare(cfg)
    return measure(graph, parts.eval, timesteps=T, encoding=cfg.encoding, seed=cfg.seed,
                   label="model")


def compare_energy(cfg: PipelineConfig, targets: Sequence[str]) -> EnergyComparison:
    """The energy per inference of ``cfg``'s model on each of ``targets`` (names or paths)."""
    profiles = [load_profile(n) for n in targets]  # before the (slower) measurement
    act = measure_model(cfg)
    return EnergyComparison(
        activity=act,
        rows=tuple(EnergyRow(target=p.name, estimate=estimate(act, p)) for p in profiles),
        reference=ann_estimate(act))


__all__ = ["EnergyComparison", "EnergyRow", "compare_energy", "measure_model"]
