"""The whole job, stage by stage: load, calibrate, score, prune, recover, retrain, report.

Library code: it raises :class:`~slamp_deploy.errors.SlampError` subclasses and reports progress
through a callback; only the CLI prints.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slamp_deploy import __version__, distributed
from slamp_deploy.chips.hardware import HardwareProfile, load_profile
from slamp_deploy.data import ENCODINGS, Dataset, Split, check_labels, load_digits, load_npz, split
from slamp_deploy.errors import DataError, ModelError, SlampError, SlampWarning, UsageError
from slamp_deploy.fit.search import capped_masks, caps_blocked, fit_keep, fit_section, has_caps
from slamp_deploy.model.graph import SpikingGraph, trace
from slamp_deploy.model.loader import BUILTIN, LoadedModel, load_model
from slamp_deploy.model.runner import READOUTS, check_readout
from slamp_deploy.prune.calibrate import TIMESTEP_WEIGHTS, TemporalStats, calibrate
from slamp_deploy.prune.masks import (
    Masks,
    alive_masks,
    apply_masks,
    masks_from_allocation,
    match_currents,
)
from slamp_deploy.prune.retrain import evaluate, retrain
from slamp_deploy.prune.scores import LAMBDA_VARIANTS, METHODS, Allocation, allocate

SCHEMA_VERSION = 1
#: sections later stages add to the report, in the order report.md shows them; each is a dict
#: that may carry "summary" (printed by the CLI) and "markdown" (appended to report.md)
REPORT_SECTIONS = ("fit", "activity", "energy", "export")
SCHEDULES = ("oneshot", "iterative")
#: SLAMP temporal factor: the three estimators from calibration statistics, or measured on the
#: network (slamp_deploy.measured_lambda)
LAMBDA_CHOICES = (*LAMBDA_VARIANTS, "measured")
DEFAULT_SPARSITY = 0.9

#: progress(description, total) -> context manager yielding advance(n)
ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run depends on; the CLI builds one from its arguments."""

    target: str = "loihi2"
    model: str | None = None  # None: the built-in digits example
    weights: str | None = None
    data: str | None = None  # None: scikit-learn digits
    eval_data: str | None = None
    timesteps: int | None = None  # None: the example's 8, or the sequence length of the data
    encoding: str = "direct"
    readout: str = "spikes"
    method: str = "slamp"
    sparsity: float | None = None  # None: DEFAULT_SPARSITY (or the fit search with fit=True)
    fit: bool = False
    chips: int | None = None
    cores: int | None = None
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    schedule: str = "oneshot"
    rounds: int = 3
    current_matching: bool = True
    lambda_variant: str = "l2"  # best mean accuracy after retraining (docs/benchmarks.md)
    timestep_weights: str = "uniform"
    eval_fraction: float = 0.2
    calib_samples: int = 256
    verify_samples: int = 64  # evaluation samples the exported models are checked on
    lava: bool = True  # run the Lava check for Loihi targets
    lava_timeout: float = 300.0  # seconds per Lava run before it is abandoned (with a warning)
    device: str = "cpu"
    dist_timeout: float = 300.0  # seconds a rank waits for the others (torchrun runs only)
    seed: int = 0
    split_seed: int = 0  # fixes the evaluation split (the built-in weights were trained on 0's)
    out: str = "slamp-out"

    def validate(self) -> None:
        """Refuse option values before any work is done (one line, names the option)."""
        if self.method not in METHODS:
            from slamp_deploy.errors import UnknownTargetError

            raise UnknownTargetError(f"--method {self.method!r}: unknown; choose one of "
                                     f"{', '.join(METHODS)}")
        if self.sparsity is not None and not (0.0 <= self.sparsity < 1.0
                                              and math.isfinite(self.sparsity)):
            raise UsageError(f"--sparsity {self.sparsity}: must be in [0, 1)")
        if self.encoding not in ENCODINGS:
            raise UsageError(f"--encoding {self.encoding!r}: choose one of {', '.join(ENCODINGS)}")
        if self.readout not in READOUTS:
            raise UsageError(f"--readout {self.readout!r}: choose one of {', '.join(READOUTS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.lambda_variant not in LAMBDA_CHOICES:
            raise UsageError(f"--lambda-variant {self.lambda_variant!r}: choose one of "
                             f"{', '.join(LAMBDA_CHOICES)}")
        if self.timestep_weights not in TIMESTEP_WEIGHTS:
            raise UsageError(f"--timestep-weights {self.timestep_weights!r}: choose one of "
                             f"{', '.join(TIMESTEP_WEIGHTS)}")
        for name, v, low in (("--epochs", self.epochs, 0), ("--rounds", self.rounds, 1),
                             ("--batch-size", self.batch_size, 1),
                             ("--calib-samples", self.calib_samples, 1),
                             ("--verify-samples", self.verify_samples, 1)):
            if v < low:
                raise UsageError(f"{name} {v}: must be at least {low}")
        if self.timesteps is not None and self.timesteps < 1:
            raise UsageError(f"--timesteps {self.timesteps}: must be at least 1")
        if not 0.0 < self.eval_fraction < 1.0:
            raise UsageError(f"--eval-fraction {self.eval_fraction}: must be in (0, 1)")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device!r}: choose cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
        if not self.lr > 0:
            raise UsageError(f"--lr {self.lr}: must be positive")


@dataclass
class PipelineResult:
    """What a run produced: the report (also written as JSON) and where the outputs are."""

    report: dict[str, Any]
    out_dir: Path
    graph: SpikingGraph
    masks: Masks = field(repr=False)


class _Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 3)


def load_data(cfg: PipelineConfig) -> tuple[Dataset, Dataset | None]:
    """The data set ``--data`` names (default: scikit-learn digits) and the evaluation set.

    ``--data`` is an ``.npz`` file or a data set spec (``cifar10:PATH``, ``cifar100:PATH``,
    ``cifar10-dvs:PATH``; see docs/datasets.md). A data set with a fixed test split returns it
    as the evaluation set; ``--eval-data`` overrides it.
    """
    ev = load_npz(cfg.eval_data) if cfg.eval_data else None
    if cfg.data is None:
        return load_digits(), ev
    from slamp_deploy.datasets import load_data_spec

    # rate and latency encoders read pixel values as probabilities in [0, 1]: no mean/std
    ds, test = load_data_spec(cfg.data, frames=cfg.timesteps,
                              normalize=None if cfg.encoding == "direct" else False)
    return ds, ev if ev is not None else test


def resolve_timesteps(cfg: PipelineConfig, ds: Dataset) -> int:
    """``--timesteps``, the sequence length of sequence data, or 8."""
    if ds.sequence:
        T = int(ds.x.shape[0])
        if cfg.timesteps is not None and cfg.timesteps != T:
            raise UsageError(f"--timesteps {cfg.timesteps}: the data {ds.source} holds sequences "
                             f"of {T} steps; drop --timesteps or pass {T}")
        return T
    if cfg.timesteps is not None:
        return cfg.timesteps
    if cfg.model is None or cfg.model == BUILTIN:
        from slamp_deploy.examples.digits import TIMESTEPS

        return TIMESTEPS
    return 8


def run(cfg: PipelineConfig, *, progress: ProgressFactory | None = None,
        after_retrain: Callable[[PipelineContext], None] | None = None) -> PipelineResult:
    """Run the whole pipeline and write its outputs into ``cfg.out`` (atomically)."""
    cfg.validate()
    world = distributed.init(cfg.device, cfg.dist_timeout)
    try:
        return _run(cfg, world, progress, after_retrain)
    finally:
        distributed.shutdown(world)


def prepare(cfg: PipelineConfig) -> tuple[LoadedModel, SpikingGraph, Split, int]:
    """Load the model and the data, trace, check labels and readout, and split the data.

    Shared by the pipeline, ``check``, ``energy`` and the benchmarks, so every command sees the
    same model, the same graph and the same samples for the same options.
    """
    loaded = load_model(cfg.model, cfg.weights, device=cfg.device)
    ds, ev = load_data(cfg)
    T = resolve_timesteps(cfg, ds)
    graph = trace(loaded.model, ds.sample_shape)
    check_readout(graph, cfg.readout)
    check_labels(ds, graph.n_outputs)
    if ev is not None:
        if ev.sample_shape != ds.sample_shape:
            raise DataError(f"--eval-data {cfg.eval_data}: per-sample shape {ev.sample_shape} "
                            f"differs from --data's {ds.sample_shape}")
        check_labels(ev, graph.n_outputs)
    parts = split(ds, eval_fraction=cfg.eval_fraction, calib_samples=cfg.calib_samples,
                  seed=cfg.seed, eval_ds=ev, split_seed=cfg.split_seed)
    return loaded, graph, parts, T


def _run(cfg: PipelineConfig, world: distributed.World, progress: ProgressFactory | None,
         after_retrain: Callable[[PipelineContext], None] | None) -> PipelineResult:
    if cfg.epochs > 0:
        distributed.check_batch(cfg.batch_size, world)
    prog: ProgressFactory = progress or _no_progress
    timer = _Timer()
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()

    with timer.stage("load"):
        profile = load_profile(cfg.target)
        loaded, graph, parts, T = prepare(cfg)
    ctx = PipelineContext(cfg=cfg, loaded=loaded, graph=graph, parts=parts, timesteps=T,
                          timer=timer, progress=prog, profile=profile, world=world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SlampWarning)
        ctx.prune_and_recover()
        if world.is_main:  # fit check, reports and export are cheap and write files: rank 0
            ctx.deploy()
        if after_retrain is not None:
            after_retrain(ctx)
    ctx.warnings = [str(w.message) for w in caught if issubclass(w.category, SlampWarning)]
    for w in caught:  # hand everything back to the caller's warning filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    timer.stages["total"] = round(time.perf_counter() - t_start, 3)
    report = ctx.build_report()
    out = Path(cfg.out).resolve()
    if world.is_main:  # only rank 0 writes
        from slamp_deploy.report.html import render_files

        with timer.stage("report_html"):
            ctx.extra_files.update(render_files(report))  # from the final report
        out = write_outputs(out, report, graph, ctx.extra_files)
    return PipelineResult(report=report, out_dir=out, graph=graph, masks=ctx.masks)


@dataclass
class PipelineContext:
    """State shared by the stages of one run (mutable while the run is in progress)."""

    cfg: PipelineConfig
    loaded: LoadedModel
    graph: SpikingGraph
    parts: Split
    timesteps: int
    timer: _Timer
    progress: ProgressFactory
    profile: HardwareProfile | None = None
    world: distributed.World = field(default_factory=distributed.World)
    mask_digests: list[str] = field(default_factory=list)
    fit_sparsity: float | None = None  # smallest sparsity that fits (with --fit)
    fits: bool | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    masks: Masks = field(default_factory=dict)
    allocation: Allocation | None = None
    stats: TemporalStats | None = None
    lambdas: dict[str, float] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    matching: dict[str, list[float]] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)  # added by later stages (fit, export)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # more outputs, by file name
    dense_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # SlampWarning messages of the run

    @property
    def sparsity(self) -> float:
        """The final target: --sparsity, the fit search's result, or the default."""
        if self.fit_sparsity is not None:
            return max(self.fit_sparsity, self.cfg.sparsity or 0.0)
        return DEFAULT_SPARSITY if self.cfg.sparsity is None else self.cfg.sparsity

    def _eval(self, key: str) -> float:
        c = self.cfg
        with self.timer.stage("evaluate"):
            acc = evaluate(self.graph, self.parts.eval, timesteps=self.timesteps,
                           encoding=c.encoding, readout=c.readout, seed=c.seed)
        self.accuracy[key] = acc
        return acc

    def _calibrate(self) -> TemporalStats:
        c = self.cfg
        n_batches = math.ceil(len(self.parts.calib) / 128)
        with self.timer.stage("calibrate"), self.progress("calibrate", n_batches) as adv:
            return calibrate(self.graph, self.parts.calib, timesteps=self.timesteps,
                             encoding=c.encoding, readout=c.readout,
                             timestep_weights=c.timestep_weights, seed=c.seed, progress=adv)

    def prune_and_recover(self) -> None:
        """Dense accuracy, then each round: calibrate, allocate, prune, match, retrain."""
        c, g = self.cfg, self.graph
        self.dense_weights = {la.name: la.weight.detach().clone() for la in g.layers}
        self._eval("dense")
        rounds = c.rounds if c.schedule == "iterative" else 1
        for r in range(1, rounds + 1):
            self.stats = self._calibrate()
            with self.timer.stage("score_allocate"):
                self.lambdas = self._lambdas()
                alive = alive_masks(g)
                if c.fit and r == 1:
                    self._fit_search(alive)
                target = 1.0 - (1.0 - self.sparsity) ** (r / rounds)
                if r == rounds:
                    target = self.sparsity
                before = {la.name: la.weight.detach().clone() for la in g.layers}
                self.allocation = allocate(
                    c.method, {la.name: la.weight for la in g.layers}, alive, target,
                    lambdas=self.lambdas, order=[la.name for la in g.layers])
                self.masks = masks_from_allocation(g, self.allocation, alive)
                blocked = (caps_blocked(g, alive, self.profile)
                           if self.profile is not None and r == 1 else None)
                if blocked is not None:
                    assert self.profile is not None
                    warnings.warn(f"{self.profile.name}'s caps (fan-in, synapses per core) are "
                                  f"not applied to the allocation: {blocked}",
                                  SlampWarning, stacklevel=2)
                if self.profile is not None and has_caps(g, alive, self.profile):
                    self.masks, binding = capped_masks(g, c.method, self.lambdas, alive,
                                                       self.allocation.keep, self.profile)
                    self.allocation = replace(
                        self.allocation, binding=binding,
                        keep={k: int(m.sum()) for k, m in self.masks.items()})
                apply_masks(g, self.masks)
                self.mask_digests = distributed.check_same_masks(self.masks)
            rec: dict[str, Any] = {"round": r, "target_sparsity": round(target, 6),
                                   "accuracy_pruned": self._eval("pruned")}
            if c.current_matching:
                with self.timer.stage("current_matching"), \
                        self.progress("current matching", len(g.layers)) as adv:
                    self.matching = match_currents(
                        g, before, self.masks, self.parts.calib, timesteps=self.timesteps,
                        encoding=c.encoding, seed=c.seed, progress=adv)
                rec["accuracy_current_matched"] = self._eval("current_matched")
            if c.epochs > 0:
                n_batches = math.ceil(len(self.parts.train) / c.batch_size) * c.epochs
                with self.timer.stage("retrain"), \
                        self.progress(f"retrain (round {r}/{rounds})" if rounds > 1
                                      else "retrain", n_batches) as adv:
                    hist = retrain(g, self.masks, self.parts.train, epochs=c.epochs,
                                   timesteps=self.timesteps, encoding=c.encoding,
                                   readout=c.readout, lr=c.lr, batch_size=c.batch_size,
                                   seed=c.seed + r, progress=adv)
                self.loss_history.extend(hist)
                rec["accuracy_retrained"] = self._eval("retrained")
            self.rounds.append(rec)
        if c.epochs == 0:
            self.accuracy.setdefault("retrained", self.accuracy.get(
                "current_matched", self.accuracy["pruned"]))

    def _lambdas(self) -> dict[str, float]:
        c = self.cfg
        if c.method != "slamp":
            return {la.name: 1.0 for la in self.graph.layers}
        if c.lambda_variant == "measured":
            from slamp_deploy.prune.measured_lambda import measured_lambdas

            return measured_lambdas(self.graph, self.parts.calib, timesteps=self.timesteps,
                                    encoding=c.encoding, seed=c.seed)
        assert self.stats is not None
        return self.stats.lambdas(c.lambda_variant)

    def _fit_search(self, alive: Masks) -> None:
        """--fit: the smallest sparsity at which the model fits the target."""
        c = self.cfg
        assert self.profile is not None
        with self.timer.stage("fit_search"):
            keep, _, _ = fit_keep(self.graph, c.method, self.lambdas, alive, self.profile,
                                  c.chips, c.cores)
        needed = 1.0 - keep / self.graph.n_weights
        if c.sparsity is not None and c.sparsity < needed - 1e-12:
            raise UsageError(f"--fit with --sparsity {c.sparsity}: the model needs at least "
                             f"{needed:.4f} sparsity to fit {self.profile.name}; raise --sparsity "
                             f"or drop it to let --fit choose")
        self.fit_sparsity = needed

    def deploy(self) -> None:
        """After retraining: check the fit, export NIR and prove the export behaves the same."""
        c = self.cfg
        if self.profile is not None:
            try:
                with self.timer.stage("fit_check"):
                    rep, section = fit_section(self.graph, self.masks, self.profile, c.chips,
                                               c.cores)
            except ModelError as e:
                if self.graph.is_chain:
                    raise
                # a residual join this target's mapper cannot place: say so, keep the rest
                warnings.warn(f"fit check skipped: {e}", SlampWarning, stacklevel=2)
            else:
                self.fits = rep.fits
                if self.fit_sparsity is not None:
                    section["fit_search_sparsity"] = _r(self.fit_sparsity)
                self.sections["fit"] = section
        from slamp_deploy.report.sections import add_activity_and_energy
        from slamp_deploy.verify import (
            ExportOptions,
            exporters_for,
            verification_batch,
            verify_exports,
        )

        with self.timer.stage("activity_energy"):
            add_activity_and_energy(self)
        with self.timer.stage("export"):
            batch = verification_batch(self.parts.eval, timesteps=self.timesteps,
                                       encoding=c.encoding, seed=c.seed, n=c.verify_samples)
            res = verify_exports(self.graph, batch, timesteps=self.timesteps,
                                 encoding=c.encoding, readout=c.readout,
                                 exporters=exporters_for(c.target, c.lava),
                                 options=ExportOptions(lava_timeout=c.lava_timeout))
            self.sections["export"] = res.section.to_dict()
            self.extra_files.update(res.files)
            self.timer.stages.update(res.timings_s)

    def layer_rows(self) -> list[dict[str, Any]]:
        """Per-layer facts for the report."""
        rows = []
        assert self.stats is not None and self.allocation is not None
        for la in self.graph.layers:
            kept = int(self.masks[la.name].sum())
            total = la.n_weights
            neuron = la.neuron
            rows.append({
                "name": la.name,
                "kind": la.kind,
                "weight_shape": list(la.weight.shape),
                "weights_total": total,
                "weights_kept": kept,
                "sparsity": _r(1.0 - kept / total),
                "layer_score": _r(self.allocation.layer_score[la.name]),
                "binding": self.allocation.binding[la.name],
                "activity_rms_per_step": [_r(v) for v in self.stats.activity_rms[la.name]],
                "neuron": None if neuron is None else neuron.name,
                "firing_rate_per_step": (None if neuron is None else
                                         [_r(v) for v in self.stats.firing_rate[neuron.name]]),
                "current_matching_factors": ({"min": _r(min(self.matching[la.name])),
                                              "max": _r(max(self.matching[la.name])),
                                              "mean": _r(float(np.mean(self.matching[la.name])))}
                                             if la.name in self.matching else None),
            })
        return rows

    def build_report(self) -> dict[str, Any]:
        c, g = self.cfg, self.graph
        kept = sum(int(m.sum()) for m in self.masks.values())
        total = g.n_weights
        cfg = asdict(c)
        report: dict[str, Any] = {
            "schema": "slamp-deploy/report",
            "schema_version": SCHEMA_VERSION,
            "slamp_deploy_version": __version__,
            "target": c.target,
            "method": c.method,
            "seed": c.seed,
            "timesteps": self.timesteps,
            "encoding": c.encoding if not self.parts.train.sequence else "sequence",
            "readout": c.readout,
            "config": cfg,
            "model": {"spec": self.loaded.spec, "weights": self.loaded.weights,
                      "ops": g.describe()},
            "data": self.parts.describe(),
            "sparsity": {"target": _r(self.sparsity), "achieved": _r(1.0 - kept / total),
                         "weights_total": total, "weights_kept": kept},
            "accuracy": {k: _r(v) for k, v in self.accuracy.items()},
            "rounds": self.rounds,
            "retrain_loss_per_epoch": [_r(v) for v in self.loss_history],
            "calibration": {
                "samples": self.stats.samples if self.stats else 0,
                "timestep_weights": [_r(v) for v in self.stats.timestep_weights]
                if self.stats else [],
                "timestep_weights_source": self.stats.timestep_weights_source
                if self.stats else None,
                "lambda_variant": c.lambda_variant,
            },
            "layers": self.layer_rows(),
            "distributed": {"world_size": self.world.size, "backend": self.world.backend,
                            "mask_digest_per_rank": list(self.mask_digests)},
            "warnings": list(self.warnings),
            "timings_s": dict(self.timer.stages),
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "device": c.device, "threads": torch.get_num_threads()},
        }
        report.update(self.sections)
        return report


def _r(v: float) -> float:
    """Round for reports only (counts stay exact; six significant decimals are plenty)."""
    return float(round(float(v), 6))


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable report.md from the report dict."""
    acc = report["accuracy"]
    sp = report["sparsity"]
    lines = [
        "# slamp-deploy report",
        "",
        f"- target: **{report['target']}**, method: **{report['method']}**, "
        f"timesteps: {report['timesteps']}, encoding: {report['encoding']}, "
        f"readout: {report['readout']}, seed: {report['seed']}",
        f"- model: `{report['model']['spec']}` (weights: `{report['model']['weights']}`)",
        f"- data: retrain {report['data']['retrain']['count']} samples, calibration "
        f"{report['data']['calibration']['count']}, evaluation "
        f"{report['data']['evaluation']['count']} ({report['data']['evaluation']['source']})",
        f"- sparsity: target {sp['target']:.4f}, achieved {sp['achieved']:.4f} "
        f"({sp['weights_kept']:,} of {sp['weights_total']:,} weights kept)",
        "",
        "## Accuracy on the evaluation data",
        "",
        "| stage | accuracy |",
        "|---|---|",
    ]
    for key, label in (("dense", "dense"), ("pruned", "right after pruning"),
                       ("current_matched", "after current matching"),
                       ("retrained", "after retraining")):
        if key in acc:
            lines.append(f"| {label} | {acc[key]:.4f} |")
    lines += ["", "## Layers", "",
              "| layer | kind | weights | kept | sparsity | layer score | decided by | "
              "mean firing rate |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["layers"]:
        fr = row["firing_rate_per_step"]
        rate = f"{sum(fr) / len(fr):.4f}" if fr else "-"
        lines.append(f"| {row['name']} | {row['kind']} | {row['weights_total']:,} | "
                     f"{row['weights_kept']:,} | {row['sparsity']:.4f} | "
                     f"{row['layer_score']:.4f} | {row['binding']} | {rate} |")
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    lines += ["", "## Time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["timings_s"].items()]
    for key in REPORT_SECTIONS:
        if key in report and isinstance(report[key], dict) and report[key].get("markdown"):
            lines += ["", report[key]["markdown"]]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, report: dict[str, Any], graph: SpikingGraph,
                  extra: dict[str, bytes] | None = None) -> Path:
    """Write report.json, report.md and pruned.pt into ``out``, replacing it atomically.

    Everything is written into a temporary folder beside ``out`` and moved into place at the
    end, so a failure leaves an earlier ``out`` untouched.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        (tmp / "report.md").write_text(render_markdown(report))
        state = {k: v.detach().cpu() for k, v in graph.model.state_dict().items()
                 if k.rsplit(".", 1)[-1] not in ("mem", "syn")}
        torch.save(state, tmp / "pruned.pt")
        for name, data in (extra or {}).items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["DEFAULT_SPARSITY", "PipelineConfig", "PipelineContext", "PipelineResult",
           "SlampError", "render_markdown", "run", "write_outputs"]
